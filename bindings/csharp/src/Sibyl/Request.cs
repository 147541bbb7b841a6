// Request.cs — a submitted chat or generation (the non-blocking API).
using System;
using System.Runtime.InteropServices;
using Sibyl.Interop;

namespace Sibyl
{
    /// <summary>
    /// A submitted request (sibyl_request): poll its events once per frame, cancel it, read its
    /// result. Dispose it when done with it (disposing a running request cancels it). A request
    /// with an onEvent callback keeps that callback alive until it is disposed or finalized, and
    /// the callback is never called after that.
    /// </summary>
    public sealed class Request : IDisposable
    {
        private readonly RequestHandle handle;
        private readonly Session session;  // keeps the session object alive while the request is
        private readonly RequestState callbackState;
        private bool done;

        internal Request(RequestHandle handle, Session session, RequestState callbackState)
        {
            this.handle = handle;
            this.session = session;
            this.callbackState = callbackState;
        }

        public Session Session { get { return session; } }

        /// <summary>The owning SafeHandle (for advanced interop).</summary>
        public RequestHandle Handle { get { return handle; } }

        public bool IsDisposed { get { return handle.IsClosed; } }

        /// <summary>Its Done event was polled (or delivered to the onEvent callback).</summary>
        public bool IsDone { get { return done || (callbackState != null && callbackState.Done); } }

        /// <summary>The first exception the onEvent callback threw (the library never sees it), or null.</summary>
        public Exception CallbackException { get { return callbackState == null ? null : callbackState.Error; } }

        private RequestHandle LiveHandle
        {
            get
            {
                if (handle.IsClosed) throw new ObjectDisposedException("Sibyl.Request");
                return handle;
            }
        }

        /// <summary>
        /// The next queued event, or null when none is queued right now. Never blocks: call it from
        /// the game loop (drain it: `while ((e = request.Poll()) != null)`). One poller at a time.
        /// </summary>
        public Event Poll()
        {
            var e = new sibyl_event();
            e.struct_size = (uint)Marshal.SizeOf(typeof(sibyl_event));
            Check.Ok(Native.sibyl_request_poll(LiveHandle, ref e));
            if (e.type == (int)EventType.None) return null;
            Event r = Event.FromNative(ref e);
            if (r.IsDone) done = true;
            return r;
        }

        /// <summary>Wait up to timeoutMicroseconds (-1: no limit) for an event or the end; true if there is one.</summary>
        public bool Wait(long timeoutMicroseconds)
        {
            int ready;
            Check.Ok(Native.sibyl_request_wait(LiveHandle, timeoutMicroseconds, out ready));
            return ready != 0;
        }

        public bool Wait(TimeSpan timeout) { return Wait((long)(timeout.TotalMilliseconds * 1000.0)); }

        /// <summary>Cancel it: it ends before the next step (Done with StopReason.Cancelled). Any thread.</summary>
        public void Cancel() { Check.Ok(Native.sibyl_request_cancel(LiveHandle)); }

        /// <summary>What it did so far (final once done): counts, stop reason, latencies.</summary>
        public RequestResult Result
        {
            get
            {
                var r = new sibyl_chat_result();
                r.struct_size = (uint)Marshal.SizeOf(typeof(sibyl_chat_result));
                Check.Ok(Native.sibyl_request_result(LiveHandle, ref r));
                return new RequestResult(r);
            }
        }

        /// <summary>
        /// Destroys the request (cancelled first if still running). When it returns the onEvent
        /// callback is not running and never runs again — unless Dispose is called from inside it.
        /// </summary>
        public void Dispose() { handle.Dispose(); }
    }
}
