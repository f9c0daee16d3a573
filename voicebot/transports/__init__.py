"""Call transports: wire codecs, pacing and lifecycles per channel, behind `CallTransport`
and `CallHost`."""
