import CZeroMQ
import ScenePSCore

/// A libzmq context. Thread-safe (libzmq contexts are); sockets made from it
/// are not. Terminated in deinit after every socket has been closed.
public final class ZMQContext: @unchecked Sendable {
    // @unchecked: the context handle itself is thread-safe per libzmq docs.
    let handle: UnsafeMutableRawPointer

    public init(ioThreads: Int32 = 1) throws {
        guard let h = zmq_ctx_new() else {
            throw ZMQError.make("zmq_ctx_new", endpoint: "", errno: zmq_errno())
        }
        handle = h
        try zmqCall("zmq_ctx_set(ZMQ_IO_THREADS)") { zmq_ctx_set(h, ZMQ_IO_THREADS, ioThreads) }
    }

    deinit {
        // Sockets are closed with linger set, so this cannot hang forever.
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }
}
