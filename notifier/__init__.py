"""The notification sidecar: claims outbox rows, renders, sends to nine channels, settles."""
