// Session.cs — one conversation over a model: blocking and streamed chats, submitted requests,
// generation, sampling, state save/load.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Sibyl.Interop;

namespace Sibyl
{
    /// <summary>
    /// One conversation (sibyl_session): its tokens, latent KV cache, logits and sampling RNG.
    /// One call at a time: a call while another runs on it, or while a request submitted on it is
    /// not done, fails with Status.Busy. Cancel may be called from any thread.
    /// </summary>
    public sealed class Session : IDisposable
    {
        private readonly SessionHandle handle;
        private readonly Model model;

        public Session(Model model, SessionOptions options = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            var o = new sibyl_session_options();
            Native.sibyl_session_options_init(ref o);
            if (options != null)
            {
                o.max_context = options.MaxContext;
                o.seed = options.Seed;
            }
            IntPtr raw;
            Check.Ok(Native.sibyl_session_create(model.LiveHandle, ref o, out raw));
            handle = new SessionHandle(raw);
            this.model = model;
        }

        private Session(SessionHandle handle, Model model)
        {
            this.handle = handle;
            this.model = model;
        }

        public Model Model { get { return model; } }

        /// <summary>The owning SafeHandle (for advanced interop).</summary>
        public SessionHandle Handle { get { return handle; } }

        public bool IsDisposed { get { return handle.IsClosed; } }

        internal SessionHandle LiveHandle
        {
            get
            {
                if (handle.IsClosed) throw new ObjectDisposedException("Sibyl.Session");
                return handle;
            }
        }

        // ------------------------------------------------------------------ chat

        /// <summary>A one-message conversation: the user's question.</summary>
        public ChatReply Chat(string userMessage, ChatOptions options = null)
        {
            return Chat(new[] { ChatMessage.User(userMessage) }, options, null);
        }

        /// <summary>
        /// Continue the conversation (the whole of it so far, ending with a user or tool turn) and
        /// return the reply. onText (optional) receives the reasoning and answer pieces as they are
        /// generated, on this thread. Tool calls land in ChatReply.ToolCalls. The session keeps the
        /// reply's tokens, so the next chat with this conversation extended reuses them.
        /// </summary>
        public ChatReply Chat(IList<ChatMessage> messages, ChatOptions options = null, Action<Channel, string> onText = null)
        {
            SessionHandle h = LiveHandle;
            var state = new BlockingState { OnText = onText };
            GCHandle gc = GCHandle.Alloc(state);
            try
            {
                using (var arena = new Arena())
                {
                    UIntPtr count;
                    IntPtr m = ChatMarshal.Messages(arena, messages, out count);
                    sibyl_chat_options o = ChatMarshal.Options(arena, messages, options);
                    o.on_tool_call = Callbacks.ToolCallPointer;
                    var r = new sibyl_chat_result();
                    r.struct_size = (uint)Marshal.SizeOf(typeof(sibyl_chat_result));
                    int st = Native.sibyl_session_chat(h, m, count, ref o, Callbacks.Text, GCHandle.ToIntPtr(gc), ref r);
                    if (state.Error != null) throw new SibylCallbackException(state.Error);
                    if (st != 0) throw Check.Error(st);
                    return new ChatReply
                    {
                        Reasoning = state.Reasoning.ToString(),
                        Answer = state.Answer.ToString(),
                        ToolCalls = state.ToolCalls,
                        StopReason = (StopReason)r.stop_reason,
                        PromptTokens = (int)r.prompt_tokens,
                        ReusedTokens = (int)r.reused_tokens,
                        ReasoningTokens = (int)r.reasoning_tokens,
                        AnswerTokens = (int)r.answer_tokens,
                        GeneratedTokens = (int)r.generated_tokens,
                        FirstTokenMicroseconds = r.first_token_us,
                        TotalMicroseconds = r.total_us,
                    };
                }
            }
            finally
            {
                gc.Free();
            }
        }

        /// <summary>
        /// The reply as a stream of events (Text pieces, ToolCall, then Done), read as they come:
        /// a submitted request whose events this enumerator waits for. Leaving the loop early
        /// (break, an exception) cancels the request. A reply that fails throws SibylException.
        /// </summary>
        public IEnumerable<Event> ChatStream(IList<ChatMessage> messages, ChatOptions options = null)
        {
            // Submitted here, not at the first MoveNext, so argument errors surface at the call.
            Request request = SubmitChat(messages, options);
            return Drain(request);
        }

        private static IEnumerable<Event> Drain(Request request)
        {
            using (request)
            {
                while (true)
                {
                    Event e = request.Poll();
                    if (e == null)
                    {
                        request.Wait(-1);
                        continue;
                    }
                    if (e.IsDone && e.Status != Status.Ok) throw e.Error;
                    yield return e;
                    if (e.IsDone) yield break;
                }
            }
        }

        /// <summary>
        /// Submit a chat turn and return at once (the non-blocking API). Read its events with
        /// Request.Poll (e.g. once per frame), or pass onEvent to receive them on the thread that
        /// runs the model's step (a library worker, or the caller of Model.Step) instead. The
        /// session is busy until the request is done. Dispose the request when finished with it.
        /// </summary>
        public Request SubmitChat(IList<ChatMessage> messages, ChatOptions options = null, Action<Event> onEvent = null)
        {
            SessionHandle h = LiveHandle;
            RequestState state;
            GCHandle gc;
            sibyl_request_options ro = RequestOptions(onEvent, out state, out gc);
            IntPtr raw;
            int st;
            try
            {
                using (var arena = new Arena())
                {
                    UIntPtr count;
                    IntPtr m = ChatMarshal.Messages(arena, messages, out count);
                    sibyl_chat_options o = ChatMarshal.Options(arena, messages, options);
                    st = Native.sibyl_session_submit_chat(h, m, count, ref o, ref ro, out raw);
                }
            }
            catch
            {
                if (gc.IsAllocated) gc.Free();
                throw;
            }
            return Submitted(st, raw, state, gc);
        }

        /// <summary>A one-message conversation, submitted.</summary>
        public Request SubmitChat(string userMessage, ChatOptions options = null, Action<Event> onEvent = null)
        {
            return SubmitChat(new[] { ChatMessage.User(userMessage) }, options, onEvent);
        }

        /// <summary>Submit a generation from token ids (Token events; see SubmitChat).</summary>
        public Request SubmitGenerate(IList<int> prompt, GenerateOptions options = null, Action<Event> onEvent = null)
        {
            SessionHandle h = LiveHandle;
            int[] p = Model.ToArray(prompt);
            RequestState state;
            GCHandle gc;
            sibyl_request_options ro = RequestOptions(onEvent, out state, out gc);
            IntPtr raw;
            int st;
            try
            {
                using (var arena = new Arena())
                {
                    sibyl_generate_options g = (options ?? new GenerateOptions()).ToNative(arena);
                    st = Native.sibyl_session_submit_generate(h, p, Check.Size(p.Length), ref g, ref ro, out raw);
                }
            }
            catch
            {
                if (gc.IsAllocated) gc.Free();
                throw;
            }
            return Submitted(st, raw, state, gc);
        }

        private static sibyl_request_options RequestOptions(Action<Event> onEvent, out RequestState state, out GCHandle gc)
        {
            var ro = new sibyl_request_options();
            Native.sibyl_request_options_init(ref ro);
            state = null;
            gc = default(GCHandle);
            if (onEvent != null)
            {
                state = new RequestState { OnEvent = onEvent };
                gc = GCHandle.Alloc(state);
                ro.on_event = Callbacks.EventPointer;
                ro.user_data = GCHandle.ToIntPtr(gc);
            }
            return ro;
        }

        private Request Submitted(int status, IntPtr raw, RequestState state, GCHandle gc)
        {
            if (status != 0)
            {
                SibylException e = Check.Error(status);  // read the message before anything else runs
                if (gc.IsAllocated) gc.Free();
                throw e;
            }
            return new Request(new RequestHandle(raw, gc), this, state);
        }

        /// <summary>
        /// Stop what runs on this session now (a Chat/Generate on another thread, or a submitted
        /// request): it ends with StopReason.Cancelled before the model's next step. Any thread.
        /// </summary>
        public void Cancel() { Check.Ok(Native.sibyl_session_cancel(LiveHandle)); }

        // ------------------------------------------------------------------ tokens

        /// <summary>
        /// Append prompt, then sample and append up to MaxNewTokens tokens (greedy by default);
        /// returns the generated tokens. onToken (optional) sees each one as it comes, on this thread.
        /// </summary>
        public int[] Generate(IList<int> prompt, GenerateOptions options = null, Action<int> onToken = null)
        {
            SessionHandle h = LiveHandle;
            int[] p = Model.ToArray(prompt);
            var state = new BlockingState { OnToken = onToken };
            GCHandle gc = GCHandle.Alloc(state);
            try
            {
                using (var arena = new Arena())
                {
                    sibyl_generate_options g = (options ?? new GenerateOptions()).ToNative(arena);
                    UIntPtr n;
                    int st = Native.sibyl_session_generate(h, p, Check.Size(p.Length), ref g, Callbacks.Token, GCHandle.ToIntPtr(gc), out n);
                    if (state.Error != null) throw new SibylCallbackException(state.Error);
                    if (st != 0) throw Check.Error(st);
                    return state.Tokens.ToArray();
                }
            }
            finally
            {
                gc.Free();
            }
        }

        /// <summary>Run the model over more tokens (one forward step) and keep the logits mode says.</summary>
        public void Append(IList<int> tokens, LogitsMode mode = LogitsMode.Last)
        {
            int[] t = Model.ToArray(tokens);
            Check.Ok(Native.sibyl_session_append(LiveHandle, t, Check.Size(t.Length), (int)mode));
        }

        /// <summary>The logits the last Append kept: rows × vocab floats, row-major (a copy).</summary>
        public float[] Logits(out int rows, out int vocab)
        {
            IntPtr p;
            UIntPtr r, v;
            Check.Ok(Native.sibyl_session_logits(LiveHandle, out p, out r, out v));
            rows = Check.Int(r);
            vocab = Check.Int(v);
            var logits = new float[checked(rows * vocab)];
            Marshal.Copy(p, logits, 0, logits.Length);
            return logits;
        }

        /// <summary>Choose a token from the last logits (greedy when sampler is null); it is not appended.</summary>
        public int Sample(SamplerOptions sampler = null)
        {
            using (var arena = new Arena())
            {
                sibyl_sampler_options s = (sampler ?? new SamplerOptions()).ToNativeValue(arena);
                int token;
                Check.Ok(Native.sibyl_session_sample(LiveHandle, ref s, out token));
                return token;
            }
        }

        /// <summary>Tokens in the session's context.</summary>
        public int Position
        {
            get
            {
                UIntPtr p;
                Check.Ok(Native.sibyl_session_position(LiveHandle, out p));
                return Check.Int(p);
            }
        }

        /// <summary>Forget every token from position on.</summary>
        public void Rewind(int position)
        {
            if (position < 0) throw new ArgumentOutOfRangeException("position");
            Check.Ok(Native.sibyl_session_rewind(LiveHandle, Check.Size(position)));
        }

        /// <summary>Empty the session and re-seed its RNG with its creation seed.</summary>
        public void Reset() { Check.Ok(Native.sibyl_session_reset(LiveHandle)); }

        public void SetSeed(ulong seed) { Check.Ok(Native.sibyl_session_set_seed(LiveHandle, seed)); }

        /// <summary>A new session continuing from this one (pages shared, copied on write).</summary>
        public Session Fork()
        {
            IntPtr raw;
            Check.Ok(Native.sibyl_session_fork(LiveHandle, out raw));
            return new Session(new SessionHandle(raw), model);
        }

        /// <summary>Speculative decoding so far: MTP drafts verified, and of them those accepted.</summary>
        public void MtpStats(out ulong drafted, out ulong accepted)
        {
            Check.Ok(Native.sibyl_session_mtp_stats(LiveHandle, out drafted, out accepted));
        }

        // ------------------------------------------------------------------ state

        /// <summary>The session's state as bytes: load it later (same model file) to continue exactly here.</summary>
        public byte[] SaveState()
        {
            SessionHandle h = LiveHandle;
            UIntPtr size;
            int st = Native.sibyl_session_save_state(h, null, UIntPtr.Zero, out size);
            if (st != 0 && st != (int)Status.BufferTooSmall) throw Check.Error(st);
            var data = new byte[Check.Int(size)];
            Check.Ok(Native.sibyl_session_save_state(h, data, Check.Size(data.Length), out size));
            if (Check.Int(size) == data.Length) return data;
            var exact = new byte[Check.Int(size)];
            Array.Copy(data, exact, exact.Length);
            return exact;
        }

        /// <summary>Replace the session's contents by a saved state (Status.Format for a foreign or corrupt one).</summary>
        public void LoadState(byte[] state)
        {
            if (state == null) throw new ArgumentNullException("state");
            Check.Ok(Native.sibyl_session_load_state(LiveHandle, state, Check.Size(state.Length)));
        }

        /// <summary>Destroys the session (a request still running on it is cancelled).</summary>
        public void Dispose() { handle.Dispose(); }
    }

    /// <summary>A callback the application passed (onText, onToken) threw; the call was stopped.</summary>
    public sealed class SibylCallbackException : Exception
    {
        public SibylCallbackException(Exception inner) : base("Sibyl: a callback threw: " + inner.Message, inner) { }
    }
}
