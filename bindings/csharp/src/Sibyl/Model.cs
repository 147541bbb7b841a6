// Model.cs — a loaded model: shared by any number of sessions and threads.
using System;
using System.Collections.Generic;
using Sibyl.Interop;

namespace Sibyl
{
    /// <summary>
    /// A loaded model (sibyl_model): configuration and weights on a backend. Thread-safe; load it
    /// once and create one Session per conversation (per NPC). Disposing it while sessions exist is
    /// allowed: their calls then fail with Status.ModelDestroyed.
    /// </summary>
    public sealed class Model : IDisposable
    {
        private readonly ModelHandle handle;

        /// <summary>Loads the default model (the embedded tiny-reasoner; see Library.DefaultModelPath).</summary>
        public Model() : this(null, null) { }

        /// <summary>Loads a Hugging Face directory, a GGUF file or a .sibyl pack (null: the default model).</summary>
        public Model(string path) : this(path, null) { }

        public Model(string path, ModelOptions options)
        {
            Layout.EnsureChecked();
            sibyl_model_options o = (options ?? new ModelOptions()).ToNative();
            IntPtr raw;
            Check.Ok(Native.sibyl_model_load(Utf8.Z(path), ref o, out raw));
            handle = new ModelHandle(raw);
            Path = path;
            LiveModels.Add(handle);
        }

        /// <summary>The path it was loaded from (null: the default model).</summary>
        public string Path { get; private set; }

        /// <summary>The owning SafeHandle (for advanced interop).</summary>
        public ModelHandle Handle { get { return handle; } }

        public bool IsDisposed { get { return handle.IsClosed; } }

        internal ModelHandle LiveHandle
        {
            get
            {
                if (handle.IsClosed) throw new ObjectDisposedException("Sibyl.Model");
                return handle;
            }
        }

        /// <summary>What the model is (read anew on each call: KvCacheBytesUsed changes).</summary>
        public ModelInfo Info
        {
            get
            {
                var i = new sibyl_model_info();
                i.struct_size = (uint)System.Runtime.InteropServices.Marshal.SizeOf(typeof(sibyl_model_info));
                Check.Ok(Native.sibyl_model_get_info(LiveHandle, ref i));
                return new ModelInfo
                {
                    Architecture = Utf8.FromZ(i.architecture),
                    Backend = Utf8.FromZ(i.backend),
                    VocabSize = i.vocab_size,
                    HiddenSize = i.hidden_size,
                    Layers = i.n_layers,
                    DenseLayers = i.n_dense_layers,
                    Heads = i.n_heads,
                    QLoraRank = i.q_lora_rank,
                    KvLoraRank = i.kv_lora_rank,
                    QkRopeHeadDim = i.qk_rope_head_dim,
                    RoutedExperts = i.n_routed_experts,
                    SharedExperts = i.n_shared_experts,
                    ExpertsPerToken = i.n_experts_per_token,
                    MaxPositionEmbeddings = i.max_position_embeddings,
                    BosTokenId = i.bos_token_id,
                    EosTokenId = i.eos_token_id,
                    Parameters = i.n_parameters,
                    KvBytesPerToken = i.kv_bytes_per_token,
                    KvCacheBytes = i.kv_cache_bytes,
                    KvPageTokens = i.kv_page_tokens,
                    WorkerThreads = i.worker_threads,
                    KvCacheBytesUsed = i.kv_cache_bytes_used,
                    Precision = (Precision)i.precision,
                    CpuSimd = Utf8.FromZ(i.cpu_simd) ?? string.Empty,
                    DecodeWeightBytes = i.decode_weight_bytes,
                    MtpLayers = i.mtp_layers,
                    Mtp = i.mtp != 0,
                };
            }
        }

        /// <summary>A new, empty session on this model.</summary>
        public Session CreateSession(SessionOptions options = null) { return new Session(this, options); }

        /// <summary>
        /// Token ids of text, exactly as the model's tokenizer encodes it without adding special
        /// tokens (special-token strings in the text do become their tokens).
        /// </summary>
        public int[] Tokenize(string text)
        {
            byte[] bytes = Utf8.Bytes(text);
            ModelHandle h = LiveHandle;
            UIntPtr n;
            int st = Native.sibyl_model_tokenize(h, bytes, Check.Size(bytes.Length), null, UIntPtr.Zero, out n);
            if (st != 0 && st != (int)Status.BufferTooSmall) throw Check.Error(st);
            var tokens = new int[Check.Int(n)];
            if (tokens.Length == 0) return tokens;
            Check.Ok(Native.sibyl_model_tokenize(h, bytes, Check.Size(bytes.Length), tokens, Check.Size(tokens.Length), out n));
            return tokens;
        }

        /// <summary>The text of tokens (special tokens included as their text).</summary>
        public string Detokenize(IList<int> tokens)
        {
            int[] t = ToArray(tokens);
            ModelHandle h = LiveHandle;
            return Text.Read((byte[] b, UIntPtr c, out UIntPtr n) => Native.sibyl_model_detokenize(h, t, Check.Size(t.Length), b, c, out n));
        }

        /// <summary>The raw bytes one token stands for (possibly part of a UTF-8 character).</summary>
        public byte[] TokenBytes(int token)
        {
            ModelHandle h = LiveHandle;
            UIntPtr n;
            int st = Native.sibyl_model_token_bytes(h, token, null, UIntPtr.Zero, out n);
            if (st != 0 && st != (int)Status.BufferTooSmall) throw Check.Error(st);
            var buffer = new byte[Check.Int(n) + 1];
            Check.Ok(Native.sibyl_model_token_bytes(h, token, buffer, Check.Size(buffer.Length), out n));
            var bytes = new byte[Check.Int(n)];
            Array.Copy(buffer, bytes, bytes.Length);
            return bytes;
        }

        /// <summary>
        /// The prompt text the chat template makes of messages (with the tool definitions and calls
        /// of options, when given), as Hugging Face's apply_chat_template renders it.
        /// </summary>
        public string RenderChat(IList<ChatMessage> messages, bool addGenerationPrompt = true, ChatOptions options = null)
        {
            ModelHandle h = LiveHandle;
            using (var arena = new Arena())
            {
                UIntPtr count;
                IntPtr m = ChatMarshal.Messages(arena, messages, out count);
                sibyl_chat_options o = ChatMarshal.Options(arena, messages, options);
                return Text.Read((byte[] b, UIntPtr c, out UIntPtr n) =>
                    Native.sibyl_model_render_chat_ex(h, m, count, ref o, addGenerationPrompt ? 1 : 0, b, c, out n));
            }
        }

        /// <summary>
        /// Run one batched step of the submitted requests on this thread, sized to take about
        /// budgetMicroseconds (0: a full step). For models loaded with WorkerThreads = 0, where the
        /// application drives the model, e.g. once per frame.
        /// </summary>
        public StepReport Step(ulong budgetMicroseconds = 0)
        {
            var r = new sibyl_step_report();
            r.struct_size = (uint)System.Runtime.InteropServices.Marshal.SizeOf(typeof(sibyl_step_report));
            Check.Ok(Native.sibyl_model_step(LiveHandle, budgetMicroseconds, ref r));
            return new StepReport(r);
        }

        /// <summary>Destroys the model (sessions stay valid objects whose calls fail with ModelDestroyed).</summary>
        public void Dispose() { handle.Dispose(); }

        /// <summary>
        /// Models not yet disposed, destroyed when the process exits or the AppDomain unloads (a Unity
        /// domain reload). Their library worker threads, once they have called managed callbacks, are
        /// known to Mono; a model left to the runtime's shutdown would have it wait for them forever.
        /// </summary>
        private static class LiveModels
        {
            private static readonly List<WeakReference> Handles = new List<WeakReference>();

            static LiveModels()
            {
                AppDomain.CurrentDomain.ProcessExit += (sender, e) => DisposeAll();
                AppDomain.CurrentDomain.DomainUnload += (sender, e) => DisposeAll();
            }

            public static void Add(ModelHandle handle)
            {
                lock (Handles)
                {
                    Handles.RemoveAll(w => !w.IsAlive);
                    Handles.Add(new WeakReference(handle));
                }
            }

            private static void DisposeAll()
            {
                List<WeakReference> all;
                lock (Handles)
                {
                    all = new List<WeakReference>(Handles);
                    Handles.Clear();
                }
                foreach (WeakReference w in all)
                {
                    var h = w.Target as ModelHandle;
                    if (h != null) h.Dispose();
                }
            }
        }

        internal static int[] ToArray(IList<int> tokens)
        {
            if (tokens == null) return new int[0];
            var a = tokens as int[];
            if (a != null) return a;
            a = new int[tokens.Count];
            tokens.CopyTo(a, 0);
            return a;
        }
    }
}
