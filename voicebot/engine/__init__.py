"""The call engine: one call's session, recognition and its recovery, utterances, turns,
events."""
