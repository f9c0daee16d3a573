"""The pieces of `voicebot simulate`: the dialogue script, the in-memory phone line and
the scripted caller (the runner and CLI are in `voicebot.simulate`)."""
