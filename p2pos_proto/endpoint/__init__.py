"""The endpoint (spec/session.md §4): many sessions and connections over many sockets,
routed by (socket, remote address) and session index, with a timer heap.

May import: every protocol layer below it.
"""
