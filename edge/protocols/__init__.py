"""Every use of uvicorn's internals: the two protocol classes `insight edge` serves with
(`websocket`, `http`), and the declaration of what they rely on in uvicorn's own classes
(`contract`).

uvicorn offers no public way to change how a socket is read or written, so these subclass its
protocols and read and replace their attributes. Nothing else in Insight imports this package
but `edge.serving` (which hands the classes to `uvicorn.run`, uvicorn's public interface)
and the tests; the rest of the edge knows only the `FrameWriter` in the WebSocket's scope
(`edge.frame_writer`), and works without it, as under plain `uvicorn edge.app:app`.

An upgrade of uvicorn may rename or drop what these classes rely on, and a subclass would
then fail quietly (an override no longer called, an attribute set that nobody reads).
`contract.UVICORN_RELIANCE` names all of it; `check_uvicorn` (run by `serve` at start-up, and
by tests/test_uvicorn_contract.py) says exactly what changed, and the range that was tested.
"""
