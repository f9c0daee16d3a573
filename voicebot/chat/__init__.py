"""The YandexGPT voice chat dialogue (`dialogue.factory: chat`)."""

from voicebot.chat.dialogue import ChatDialogue, ChatProvider, build_provider

__all__ = ["ChatDialogue", "ChatProvider", "build_provider"]
