"""Real-time events: Socket.IO rooms shared across processes through Redis."""
