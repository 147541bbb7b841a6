// Types.cs — the public value types of the binding: status codes and enums (their numbers are
// sibyl.h's), the exception, options and results.
using System;
using System.Collections.Generic;
using Sibyl.Interop;

namespace Sibyl
{
    /// <summary>sibyl_status: what a failed call returned.</summary>
    public enum Status
    {
        Ok = 0,
        InvalidArgument = 1,
        StructSize = 2,
        Io = 3,
        Format = 4,
        Unsupported = 5,
        OutOfMemory = 6,
        InvalidToken = 7,
        ContextFull = 8,
        ModelDestroyed = 9,
        NoLogits = 10,
        Backend = 11,
        Internal = 12,
        BufferTooSmall = 13,
        Busy = 14,
    }

    /// <summary>Why a reply or generation ended (sibyl_stop_reason).</summary>
    public enum StopReason { Eos = 0, MaxTokens = 1, StopString = 2, Callback = 3, Cancelled = 4, Error = 5 }

    /// <summary>Which stream a piece of chat text belongs to.</summary>
    public enum Channel { Reasoning = 0, Answer = 1 }

    public enum Backend { Auto = 0, Cpu = 1, Cuda = 2, Vulkan = 3 }

    /// <summary>How matmuls compute: Fast (8-bit/bf16 activations, the default) or Exact (float32).</summary>
    public enum Precision { Fast = 0, Exact = 1 }

    /// <summary>Which logits Session.Append keeps.</summary>
    public enum LogitsMode { Last = 0, All = 1, None = 2 }

    /// <summary>What a chat's grammar constrains: the answer (default) or every generated token.</summary>
    public enum GrammarScope { Answer = 0, Whole = 1 }

    /// <summary>May the model call tools in a chat?</summary>
    public enum ToolChoice { Auto = 0, None = 1, Required = 2 }

    /// <summary>The kind of a request Event (sibyl_event_type; Poll returns null instead of None).</summary>
    public enum EventType { None = 0, Token = 1, Text = 2, Done = 3, ToolCall = 4 }

    public enum LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 }

    /// <summary>A failed library call: the status and the library's own message saying why.</summary>
    public class SibylException : Exception
    {
        public SibylException(Status status, string message)
            : base(string.IsNullOrEmpty(message) ? Library.StatusString(status) : message)
        {
            Status = status;
            LibraryMessage = message ?? string.Empty;
        }

        internal SibylException(Status status, string message, bool noLookup) : base(message)
        {
            Status = status;
            LibraryMessage = message ?? string.Empty;
        }

        /// <summary>The sibyl_status of the call.</summary>
        public Status Status { get; private set; }

        /// <summary>sibyl_last_error_message() right after the call ("" when it gave none).</summary>
        public string LibraryMessage { get; private set; }

        public override string ToString() { return "SibylException(" + Status + "): " + base.ToString(); }
    }

    /// <summary>The loaded library's structs differ from this binding's mirrors (or its ABI is too old).</summary>
    public sealed class SibylLayoutException : SibylException
    {
        public SibylLayoutException(string message) : base(Status.StructSize, message, true) { }
    }

    /// <summary>How a model loads (sibyl_model_options). Defaults are the library's.</summary>
    public sealed class ModelOptions
    {
        public ModelOptions()
        {
            Layout.EnsureChecked();
            var o = new sibyl_model_options();
            Native.sibyl_model_options_init(ref o);
            Backend = (Backend)o.backend;
            Threads = o.n_threads;
            DeviceIndex = o.device_index;
            MemoryBudget = o.memory_budget;
            KvCacheBytes = o.kv_cache_bytes;
            KvPageTokens = o.kv_page_tokens;
            WorkerThreads = o.worker_threads;
            WorkerNice = o.worker_nice;
            WorkerCpuMask = o.worker_cpu_mask;
            StepTokens = o.step_tokens;
            Precision = (Precision)o.precision;
            Mtp = o.mtp != 0;
            MtpMaxBatch = o.mtp_max_batch;
        }

        public Backend Backend { get; set; }
        /// <summary>CPU worker threads of the backend; 0 = all hardware threads.</summary>
        public int Threads { get; set; }
        public int DeviceIndex { get; set; }
        /// <summary>GPU bytes Sibyl may use; 0 = no limit.</summary>
        public ulong MemoryBudget { get; set; }
        /// <summary>The latent cache pool all sessions share; 0 = 1 GiB.</summary>
        public ulong KvCacheBytes { get; set; }
        public uint KvPageTokens { get; set; }
        /// <summary>Library threads that run submitted requests; -1 = 1; 0 = none: call Model.Step.</summary>
        public int WorkerThreads { get; set; }
        public int WorkerNice { get; set; }
        public ulong WorkerCpuMask { get; set; }
        public uint StepTokens { get; set; }
        public Precision Precision { get; set; }
        /// <summary>Speculative decoding with the checkpoint's multi-token-prediction layer.</summary>
        public bool Mtp { get; set; }
        public uint MtpMaxBatch { get; set; }

        internal sibyl_model_options ToNative()
        {
            var o = new sibyl_model_options();
            Native.sibyl_model_options_init(ref o);
            o.backend = (int)Backend;
            o.n_threads = Threads;
            o.device_index = DeviceIndex;
            o.memory_budget = MemoryBudget;
            o.kv_cache_bytes = KvCacheBytes;
            o.kv_page_tokens = KvPageTokens;
            o.worker_threads = WorkerThreads;
            o.worker_nice = WorkerNice;
            o.worker_cpu_mask = WorkerCpuMask;
            o.step_tokens = StepTokens;
            o.precision = (int)Precision;
            o.mtp = Mtp ? 1 : 0;
            o.mtp_max_batch = MtpMaxBatch;
            return o;
        }
    }

    /// <summary>What a loaded model is (sibyl_model_info).</summary>
    public sealed class ModelInfo
    {
        public string Architecture { get; internal set; }
        public string Backend { get; internal set; }
        public int VocabSize { get; internal set; }
        public int HiddenSize { get; internal set; }
        public int Layers { get; internal set; }
        public int DenseLayers { get; internal set; }
        public int Heads { get; internal set; }
        public int QLoraRank { get; internal set; }
        public int KvLoraRank { get; internal set; }
        public int QkRopeHeadDim { get; internal set; }
        public int RoutedExperts { get; internal set; }
        public int SharedExperts { get; internal set; }
        public int ExpertsPerToken { get; internal set; }
        public int MaxPositionEmbeddings { get; internal set; }
        public int BosTokenId { get; internal set; }
        public int EosTokenId { get; internal set; }
        public ulong Parameters { get; internal set; }
        public ulong KvBytesPerToken { get; internal set; }
        public ulong KvCacheBytes { get; internal set; }
        public uint KvPageTokens { get; internal set; }
        public int WorkerThreads { get; internal set; }
        public ulong KvCacheBytesUsed { get; internal set; }
        public Precision Precision { get; internal set; }
        public string CpuSimd { get; internal set; }
        public ulong DecodeWeightBytes { get; internal set; }
        public int MtpLayers { get; internal set; }
        public bool Mtp { get; internal set; }
    }

    /// <summary>How a session is created (sibyl_session_options).</summary>
    public sealed class SessionOptions
    {
        /// <summary>Max tokens in the session; 0 = the model's max_position_embeddings.</summary>
        public uint MaxContext { get; set; }
        /// <summary>Seed of the session's sampling RNG.</summary>
        public ulong Seed { get; set; }
    }

    /// <summary>How the next token is chosen (sibyl_sampler_options). The defaults are greedy.</summary>
    public sealed class SamplerOptions
    {
        public SamplerOptions()
        {
            Temperature = 0f;
            TopP = 1f;
            RepetitionPenalty = 1f;
        }

        /// <summary>0 or less: greedy.</summary>
        public float Temperature { get; set; }
        public int TopK { get; set; }
        public float TopP { get; set; }
        public float MinP { get; set; }
        public float RepetitionPenalty { get; set; }
        public int RepetitionLastN { get; set; }
        /// <summary>Added to tokens' logits before sampling; float.NegativeInfinity bans a token.</summary>
        public IDictionary<int, float> LogitBias { get; set; }

        internal IntPtr ToNative(Arena arena)
        {
            var s = new sibyl_sampler_options();
            Native.sibyl_sampler_options_init(ref s);
            s.temperature = Temperature;
            s.top_k = TopK;
            s.top_p = TopP;
            s.min_p = MinP;
            s.repetition_penalty = RepetitionPenalty;
            s.repetition_last_n = RepetitionLastN;
            if (LogitBias != null && LogitBias.Count > 0)
            {
                var biases = new sibyl_logit_bias[LogitBias.Count];
                int i = 0;
                foreach (KeyValuePair<int, float> kv in LogitBias)
                    biases[i++] = new sibyl_logit_bias { token = kv.Key, bias = kv.Value };
                s.logit_bias = arena.Structs(biases);
                s.n_logit_bias = Check.Size(biases.Length);
            }
            return arena.Struct(s);
        }

        internal sibyl_sampler_options ToNativeValue(Arena arena)
        {
            IntPtr p = ToNative(arena);
            return (sibyl_sampler_options)System.Runtime.InteropServices.Marshal.PtrToStructure(p, typeof(sibyl_sampler_options));
        }
    }

    /// <summary>How Session.Generate runs (sibyl_generate_options).</summary>
    public sealed class GenerateOptions
    {
        public GenerateOptions()
        {
            MaxNewTokens = 256;
            StopAtEos = true;
        }

        public uint MaxNewTokens { get; set; }
        /// <summary>Stop after the model's end-of-sequence token (default true).</summary>
        public bool StopAtEos { get; set; }
        /// <summary>Set: re-seed the session RNG with it first.</summary>
        public ulong? Seed { get; set; }
        /// <summary>null: greedy.</summary>
        public SamplerOptions Sampler { get; set; }
        /// <summary>Every generated token follows it; null: free.</summary>
        public Grammar Grammar { get; set; }

        internal sibyl_generate_options ToNative(Arena arena)
        {
            var g = new sibyl_generate_options();
            Native.sibyl_generate_options_init(ref g);
            g.max_new_tokens = MaxNewTokens;
            g.stop_at_eos = StopAtEos ? 1 : 0;
            g.reseed = Seed.HasValue ? 1 : 0;
            g.seed = Seed.HasValue ? Seed.Value : 0;
            g.sampler = Sampler == null ? IntPtr.Zero : Sampler.ToNative(arena);
            g.grammar = Grammar == null ? IntPtr.Zero : arena.Handle(Grammar.LiveHandle);
            return g;
        }
    }

    /// <summary>A tool the model may call in a chat.</summary>
    public sealed class Tool
    {
        public Tool() { }

        public Tool(string name, string description, string parametersSchema)
        {
            Name = name;
            Description = description;
            Parameters = parametersSchema;
        }

        /// <summary>1 to 64 of A-Z a-z 0-9 _ . -, unique in a chat.</summary>
        public string Name { get; set; }
        public string Description { get; set; }
        /// <summary>JSON Schema of the arguments; null: any JSON object.</summary>
        public string Parameters { get; set; }
    }

    /// <summary>A tool call a reply made (or an earlier assistant message made, in a conversation).</summary>
    public sealed class ToolCall
    {
        public ToolCall(string name, string arguments)
        {
            Name = name;
            Arguments = arguments;
        }

        public string Name { get; private set; }
        /// <summary>The JSON text of the arguments, exactly as the model wrote it.</summary>
        public string Arguments { get; private set; }

        public override string ToString() { return Name + Arguments; }
    }

    /// <summary>One message of a conversation.</summary>
    public sealed class ChatMessage
    {
        public ChatMessage(string role, string content)
        {
            Role = role;
            Content = content ?? string.Empty;
            ToolCalls = new List<ToolCall>();
        }

        public static ChatMessage System(string content) { return new ChatMessage("system", content); }
        public static ChatMessage User(string content) { return new ChatMessage("user", content); }
        public static ChatMessage Assistant(string content) { return new ChatMessage("assistant", content); }
        /// <summary>An assistant turn that made tool calls (pass back ChatReply.Answer and ChatReply.ToolCalls).</summary>
        public static ChatMessage Assistant(string content, IEnumerable<ToolCall> toolCalls)
        {
            var m = new ChatMessage("assistant", content);
            if (toolCalls != null) m.ToolCalls.AddRange(toolCalls);
            return m;
        }
        /// <summary>A tool's output, answering a call (one per call, in order).</summary>
        public static ChatMessage ToolResult(string content) { return new ChatMessage("tool", content); }

        /// <summary>"system", "user", "assistant" or "tool".</summary>
        public string Role { get; set; }
        public string Content { get; set; }
        /// <summary>
        /// false (default): the content is plain text — text that spells a control token stays text,
        /// so a player cannot forge turns. true: content the application wrote, whose control-token text
        /// becomes those tokens.
        /// </summary>
        public bool Trusted { get; set; }
        /// <summary>An assistant message's tool calls.</summary>
        public List<ToolCall> ToolCalls { get; private set; }
    }

    /// <summary>How a chat runs (sibyl_chat_options). The defaults equal sibyl_chat_options_init (greedy).</summary>
    public sealed class ChatOptions
    {
        public ChatOptions()
        {
            MaxNewTokens = 1024;
            Thinking = true;
            StopStrings = new List<string>();
            Tools = new List<Tool>();
        }

        /// <summary>Reasoning + answer tokens.</summary>
        public uint MaxNewTokens { get; set; }
        /// <summary>Set: "&lt;/think&gt;" is forced after that many reasoning tokens.</summary>
        public int? ThinkBudget { get; set; }
        /// <summary>false: skip the reasoning where the template allows.</summary>
        public bool Thinking { get; set; }
        /// <summary>The answer ends before the first of these.</summary>
        public IList<string> StopStrings { get; set; }
        /// <summary>null: greedy.</summary>
        public SamplerOptions Sampler { get; set; }
        /// <summary>Set: re-seed the session RNG with it first.</summary>
        public ulong? Seed { get; set; }
        /// <summary>The reply follows this grammar (a submitted request keeps what it needs).</summary>
        public Grammar Grammar { get; set; }
        public GrammarScope GrammarScope { get; set; }
        /// <summary>Tools the model may call; their definitions join the system prompt.</summary>
        public IList<Tool> Tools { get; set; }
        public ToolChoice ToolChoice { get; set; }
        /// <summary>With ToolChoice.Required: the one tool to call; null: any.</summary>
        public string ToolName { get; set; }
    }

    /// <summary>What a chat produced: both channels in full, the calls, why it stopped, the counts.</summary>
    public sealed class ChatReply
    {
        internal ChatReply() { ToolCalls = new List<ToolCall>(); }

        public string Reasoning { get; internal set; }
        public string Answer { get; internal set; }
        public StopReason StopReason { get; internal set; }
        /// <summary>The calls the reply made (never part of Answer).</summary>
        public IList<ToolCall> ToolCalls { get; internal set; }
        /// <summary>Prompt tokens run for this call.</summary>
        public int PromptTokens { get; internal set; }
        /// <summary>Prompt tokens found in the session's cache.</summary>
        public int ReusedTokens { get; internal set; }
        public int ReasoningTokens { get; internal set; }
        /// <summary>End-of-sequence included.</summary>
        public int AnswerTokens { get; internal set; }
        public int GeneratedTokens { get; internal set; }
        public ulong FirstTokenMicroseconds { get; internal set; }
        public ulong TotalMicroseconds { get; internal set; }

        public override string ToString() { return Answer; }
    }

    /// <summary>What a Request did so far (final once it is done; StopReason is Error until then).</summary>
    public sealed class RequestResult
    {
        internal RequestResult(sibyl_chat_result r)
        {
            StopReason = (StopReason)r.stop_reason;
            PromptTokens = (int)r.prompt_tokens;
            ReusedTokens = (int)r.reused_tokens;
            ReasoningTokens = (int)r.reasoning_tokens;
            AnswerTokens = (int)r.answer_tokens;
            GeneratedTokens = (int)r.generated_tokens;
            FirstTokenMicroseconds = r.first_token_us;
            TotalMicroseconds = r.total_us;
            DraftedTokens = (int)r.drafted_tokens;
            AcceptedDrafts = (int)r.accepted_drafts;
            ToolCalls = (int)r.tool_calls;
        }

        public StopReason StopReason { get; private set; }
        public int PromptTokens { get; private set; }
        public int ReusedTokens { get; private set; }
        public int ReasoningTokens { get; private set; }
        public int AnswerTokens { get; private set; }
        public int GeneratedTokens { get; private set; }
        public ulong FirstTokenMicroseconds { get; private set; }
        public ulong TotalMicroseconds { get; private set; }
        public int DraftedTokens { get; private set; }
        public int AcceptedDrafts { get; private set; }
        /// <summary>Tool calls the reply made.</summary>
        public int ToolCalls { get; private set; }
    }

    /// <summary>One event of a Request; it owns its text (valid after the next poll).</summary>
    public sealed class Event
    {
        public EventType Type { get; private set; }
        /// <summary>Token: the sampled token.</summary>
        public int Token { get; private set; }
        /// <summary>Text: the channel of the piece.</summary>
        public Channel Channel { get; private set; }
        /// <summary>Text: the piece (complete UTF-8 characters); ToolCall: the arguments (JSON); Done with an error: the message.</summary>
        public string Text { get; private set; }
        /// <summary>ToolCall: the tool.</summary>
        public string Name { get; private set; }
        /// <summary>Done: why it ended.</summary>
        public StopReason StopReason { get; private set; }
        /// <summary>Done: Status.Ok or the request's error.</summary>
        public Status Status { get; private set; }

        public bool IsDone { get { return Type == EventType.Done; } }

        /// <summary>Done with an error: the exception it stands for; otherwise null.</summary>
        public SibylException Error
        {
            get { return Type == EventType.Done && Status != Status.Ok ? new SibylException(Status, Text) : null; }
        }

        internal static Event FromNative(ref sibyl_event e)
        {
            var r = new Event { Type = (EventType)e.type, Text = string.Empty, Token = -1 };
            switch (r.Type)
            {
                case EventType.Token:
                    r.Token = e.token;
                    break;
                case EventType.Text:
                    r.Channel = (Channel)e.channel;
                    r.Text = Utf8.FromPtr(e.text, e.text_len);
                    break;
                case EventType.Done:
                    r.StopReason = (StopReason)e.stop_reason;
                    r.Status = (Status)e.status;
                    r.Text = Utf8.FromPtr(e.text, e.text_len);
                    break;
                case EventType.ToolCall:
                    r.Name = Utf8.FromPtr(e.name, e.name_len);
                    r.Text = Utf8.FromPtr(e.text, e.text_len);
                    break;
            }
            return r;
        }

        public override string ToString()
        {
            switch (Type)
            {
                case EventType.Token: return "Token(" + Token + ")";
                case EventType.Text: return Channel + "(" + Text + ")";
                case EventType.Done: return "Done(" + StopReason + (Status == Status.Ok ? "" : ", " + Status + ": " + Text) + ")";
                case EventType.ToolCall: return "ToolCall(" + Name + Text + ")";
                default: return Type.ToString();
            }
        }
    }

    /// <summary>What one Model.Step did.</summary>
    public sealed class StepReport
    {
        internal StepReport(sibyl_step_report r)
        {
            Rows = (int)r.rows;
            Sequences = (int)r.sequences;
            Pending = (int)r.pending;
            ElapsedMicroseconds = r.elapsed_us;
            Overrun = r.overrun != 0;
        }

        /// <summary>Tokens run (0: nothing could run).</summary>
        public int Rows { get; private set; }
        /// <summary>Requests in the step.</summary>
        public int Sequences { get; private set; }
        /// <summary>Requests not finished after it.</summary>
        public int Pending { get; private set; }
        public ulong ElapsedMicroseconds { get; private set; }
        /// <summary>The step took longer than its budget.</summary>
        public bool Overrun { get; private set; }
    }
}
