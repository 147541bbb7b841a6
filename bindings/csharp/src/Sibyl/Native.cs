// Native.cs — the P/Invoke declarations of sibyl.h and the mirrors of its public structs.
//
// Every mirror is blittable (IntPtr, UIntPtr, int, uint, ulong, long, float fields only:
// enums are int, pointers IntPtr, size_t UIntPtr), its field names are the C field names,
// so Layout.Check can compare Marshal.OffsetOf with sibyl_struct_offset field by field.
// Nothing here needs `unsafe`. Callbacks are static methods (IL2CPP can only call those
// back) reached through static delegate instances; user_data carries a GCHandle.
using System;
using System.Runtime.InteropServices;

namespace Sibyl.Interop
{
    /// <summary>
    /// Marks a static method that native code calls back. IL2CPP (Unity's AOT compiler) looks
    /// for an attribute of this name on every reverse-P/Invoke target; Mono and .NET ignore it.
    /// </summary>
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type delegateType) { DelegateType = delegateType; }
        public Type DelegateType { get; private set; }
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_vulkan_device
    {
        public uint struct_size;
        public IntPtr instance;
        public IntPtr physical_device;
        public IntPtr device;
        public IntPtr queue;
        public uint queue_family_index;
        public IntPtr get_instance_proc_addr;
        public IntPtr lock_queue;
        public IntPtr unlock_queue;
        public IntPtr queue_user_data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_model_options
    {
        public uint struct_size;
        public int backend;
        public int n_threads;
        public int device_index;
        public ulong memory_budget;
        public IntPtr vulkan_device;
        public ulong kv_cache_bytes;
        public uint kv_page_tokens;
        public int worker_threads;
        public int worker_nice;
        public ulong worker_cpu_mask;
        public uint step_tokens;
        public int precision;
        public int mtp;
        public uint mtp_max_batch;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_model_info
    {
        public uint struct_size;
        public IntPtr architecture;
        public IntPtr backend;
        public int vocab_size;
        public int hidden_size;
        public int n_layers;
        public int n_dense_layers;
        public int n_heads;
        public int q_lora_rank;
        public int kv_lora_rank;
        public int qk_rope_head_dim;
        public int n_routed_experts;
        public int n_shared_experts;
        public int n_experts_per_token;
        public int max_position_embeddings;
        public int bos_token_id;
        public int eos_token_id;
        public ulong n_parameters;
        public ulong kv_bytes_per_token;
        public ulong kv_cache_bytes;
        public uint kv_page_tokens;
        public int worker_threads;
        public ulong kv_cache_bytes_used;
        public int precision;
        public IntPtr cpu_simd;
        public ulong decode_weight_bytes;
        public int mtp_layers;
        public int mtp;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_session_options
    {
        public uint struct_size;
        public uint max_context;
        public ulong seed;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_logit_bias
    {
        public int token;
        public float bias;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_sampler_options
    {
        public uint struct_size;
        public float temperature;
        public int top_k;
        public float top_p;
        public float min_p;
        public float repetition_penalty;
        public int repetition_last_n;
        public IntPtr logit_bias;
        public UIntPtr n_logit_bias;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_generate_options
    {
        public uint struct_size;
        public uint max_new_tokens;
        public int stop_at_eos;
        public int reseed;
        public ulong seed;
        public IntPtr sampler;
        public IntPtr grammar;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_chat_message
    {
        public IntPtr role;
        public IntPtr content;
        public UIntPtr content_len;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_tool
    {
        public IntPtr name;
        public IntPtr description;
        public IntPtr parameters;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_tool_call
    {
        public UIntPtr message;
        public IntPtr name;
        public IntPtr arguments;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_chat_options
    {
        public uint struct_size;
        public uint max_new_tokens;
        public int think_budget;
        public int thinking;
        public IntPtr stop_strings;
        public UIntPtr n_stop_strings;
        public IntPtr sampler;
        public int reseed;
        public ulong seed;
        public IntPtr trusted;
        public IntPtr grammar;
        public int grammar_scope;
        public IntPtr tools;
        public UIntPtr n_tools;
        public int tool_choice;
        public IntPtr tool_name;
        public IntPtr tool_calls;
        public UIntPtr n_tool_calls;
        public IntPtr on_tool_call;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_chat_result
    {
        public uint struct_size;
        public int stop_reason;
        public uint prompt_tokens;
        public uint reused_tokens;
        public uint reasoning_tokens;
        public uint answer_tokens;
        public uint generated_tokens;
        public uint reserved;
        public ulong first_token_us;
        public ulong total_us;
        public uint drafted_tokens;
        public uint accepted_drafts;
        public uint tool_calls;
        public uint reserved2;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_event
    {
        public uint struct_size;
        public int type;
        public int token;
        public int channel;
        public IntPtr text;
        public UIntPtr text_len;
        public int stop_reason;
        public int status;
        public IntPtr name;
        public UIntPtr name_len;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_request_options
    {
        public uint struct_size;
        public IntPtr on_event;
        public IntPtr user_data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sibyl_step_report
    {
        public uint struct_size;
        public uint rows;
        public uint sequences;
        public uint pending;
        public ulong elapsed_us;
        public int overrun;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void LogFn(int level, IntPtr message, IntPtr userData);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int TokenFn(int token, IntPtr userData);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int TextFn(int channel, IntPtr piece, UIntPtr pieceLen, IntPtr userData);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int ToolCallFn(IntPtr name, UIntPtr nameLen, IntPtr arguments, UIntPtr argumentsLen, IntPtr userData);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void EventFn(IntPtr evt, IntPtr userData);

    /// <summary>The C functions. Strings go in as NUL-terminated UTF-8 byte arrays (Utf8.Z).</summary>
    internal static class Native
    {
        /// <summary>
        /// The library's name: "sibyl" is libsibyl.so on Linux, libsibyl.dylib on macOS and
        /// sibyl.dll on Windows (Mono, .NET and Unity add the platform's prefix and suffix).
        /// </summary>
        public const string Lib = "sibyl";
        private const CallingConvention CC = CallingConvention.Cdecl;

        [DllImport(Lib, CallingConvention = CC)] public static extern uint sibyl_abi_version();
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr sibyl_version_string();
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr sibyl_status_string(int status);
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr sibyl_last_error_message();
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_set_log_callback(LogFn fn, IntPtr userData, int minLevel);

        // layout (0.8)
        [DllImport(Lib, CallingConvention = CC)] public static extern UIntPtr sibyl_struct_size(byte[] name);
        [DllImport(Lib, CallingConvention = CC)] public static extern UIntPtr sibyl_struct_offset(byte[] name, byte[] field);
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr sibyl_struct_name(UIntPtr index);
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr sibyl_struct_field(byte[] name, UIntPtr index);

        // model
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_model_options_init(ref sibyl_model_options options);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_model_load(byte[] path, ref sibyl_model_options options, out IntPtr model);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_default_model_path([Out] byte[] buffer, UIntPtr capacity, out UIntPtr length);
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_model_destroy(IntPtr model);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_model_get_info(ModelHandle model, ref sibyl_model_info info);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_model_step(ModelHandle model, ulong budgetUs, ref sibyl_step_report report);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_model_tokenize(ModelHandle model, byte[] text, UIntPtr textLen, [Out] int[] tokens, UIntPtr capacity, out UIntPtr count);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_model_detokenize(ModelHandle model, int[] tokens, UIntPtr count, [Out] byte[] buffer, UIntPtr capacity, out UIntPtr length);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_model_token_bytes(ModelHandle model, int token, [Out] byte[] buffer, UIntPtr capacity, out UIntPtr length);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_model_render_chat_ex(ModelHandle model, IntPtr messages, UIntPtr count, ref sibyl_chat_options options, int addGenerationPrompt, [Out] byte[] buffer, UIntPtr capacity, out UIntPtr length);

        // session
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_session_options_init(ref sibyl_session_options options);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_create(ModelHandle model, ref sibyl_session_options options, out IntPtr session);
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_session_destroy(IntPtr session);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_fork(SessionHandle session, out IntPtr fork);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_append(SessionHandle session, int[] tokens, UIntPtr count, int mode);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_logits(SessionHandle session, out IntPtr logits, out UIntPtr rows, out UIntPtr vocab);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_position(SessionHandle session, out UIntPtr position);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_mtp_stats(SessionHandle session, out ulong drafted, out ulong accepted);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_save_state(SessionHandle session, [Out] byte[] buffer, UIntPtr capacity, out UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_load_state(SessionHandle session, byte[] data, UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_rewind(SessionHandle session, UIntPtr position);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_reset(SessionHandle session);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_set_seed(SessionHandle session, ulong seed);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_cancel(SessionHandle session);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_sample(SessionHandle session, ref sibyl_sampler_options options, out int token);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_generate(SessionHandle session, int[] prompt, UIntPtr count, ref sibyl_generate_options options, TokenFn onToken, IntPtr userData, out UIntPtr generated);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_chat(SessionHandle session, IntPtr messages, UIntPtr count, ref sibyl_chat_options options, TextFn onText, IntPtr userData, ref sibyl_chat_result result);

        // options defaults
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_sampler_options_init(ref sibyl_sampler_options options);
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_generate_options_init(ref sibyl_generate_options options);
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_chat_options_init(ref sibyl_chat_options options);
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_request_options_init(ref sibyl_request_options options);

        // requests
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_submit_chat(SessionHandle session, IntPtr messages, UIntPtr count, ref sibyl_chat_options options, ref sibyl_request_options requestOptions, out IntPtr request);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_session_submit_generate(SessionHandle session, int[] prompt, UIntPtr count, ref sibyl_generate_options options, ref sibyl_request_options requestOptions, out IntPtr request);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_request_poll(RequestHandle request, ref sibyl_event evt);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_request_wait(RequestHandle request, long timeoutUs, out int ready);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_request_cancel(RequestHandle request);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_request_result(RequestHandle request, ref sibyl_chat_result result);
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_request_destroy(IntPtr request);

        // grammars
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_grammar_from_gbnf(byte[] gbnf, byte[] root, out IntPtr grammar);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_grammar_from_json_schema(byte[] schema, out IntPtr grammar);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_json_schema_to_gbnf(byte[] schema, [Out] byte[] buffer, UIntPtr capacity, out UIntPtr length);
        [DllImport(Lib, CallingConvention = CC)] public static extern void sibyl_grammar_destroy(IntPtr grammar);
        [DllImport(Lib, CallingConvention = CC)] public static extern int sibyl_grammar_prepare(GrammarHandle grammar, ModelHandle model, int scope);
    }
}
