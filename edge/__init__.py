"""The realtime edge: the server that streams each recipient's events to its browsers' sockets
(`edge.app`, served by `insight edge`). It publishes nothing itself; producers use the
`realtime` library, and both meet in the broker (`realtime.broker`).
"""
