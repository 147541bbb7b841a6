// ChatMarshal.cs — conversations and chat options as the C structs, in an Arena; and the static
// callbacks native code calls (static, so IL2CPP can call them; the object they work on comes
// through user_data as a GCHandle).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Sibyl.Interop
{
    internal static class ChatMarshal
    {
        public static IntPtr Messages(Arena arena, IList<ChatMessage> messages, out UIntPtr count)
        {
            if (messages == null) throw new ArgumentNullException("messages");
            var m = new sibyl_chat_message[messages.Count];
            for (int i = 0; i < m.Length; i++)
            {
                ChatMessage msg = messages[i];
                if (msg == null) throw new ArgumentException("messages[" + i + "] is null", "messages");
                byte[] content = Utf8.Bytes(msg.Content);
                m[i].role = arena.Z(msg.Role ?? string.Empty);
                m[i].content = arena.Bytes(content.Length == 0 ? new byte[1] : content);
                m[i].content_len = Check.Size(content.Length);
            }
            count = Check.Size(m.Length);
            return m.Length == 0 ? arena.Alloc(1) : arena.Structs(m);
        }

        /// <summary>The C options of a chat; the on_tool_call pointer is left for the caller to set.</summary>
        public static sibyl_chat_options Options(Arena arena, IList<ChatMessage> messages, ChatOptions options)
        {
            var o = new sibyl_chat_options();
            Native.sibyl_chat_options_init(ref o);
            if (messages != null)
            {
                bool anyTrusted = false;
                var calls = new List<sibyl_tool_call>();
                for (int i = 0; i < messages.Count; i++)
                {
                    ChatMessage msg = messages[i];
                    if (msg == null) continue;
                    anyTrusted |= msg.Trusted;
                    foreach (ToolCall c in msg.ToolCalls)
                        calls.Add(new sibyl_tool_call
                        {
                            message = Check.Size(i),
                            name = arena.Z(c.Name ?? string.Empty),
                            arguments = arena.Z(c.Arguments ?? "{}"),
                        });
                }
                if (anyTrusted)
                {
                    var flags = new int[messages.Count];
                    for (int i = 0; i < flags.Length; i++) flags[i] = messages[i] != null && messages[i].Trusted ? 1 : 0;
                    o.trusted = arena.Int32s(flags);
                }
                if (calls.Count > 0)
                {
                    o.tool_calls = arena.Structs(calls.ToArray());
                    o.n_tool_calls = Check.Size(calls.Count);
                }
            }
            if (options == null) return o;
            o.max_new_tokens = options.MaxNewTokens;
            o.think_budget = options.ThinkBudget.HasValue ? options.ThinkBudget.Value : -1;
            o.thinking = options.Thinking ? 1 : 0;
            if (options.StopStrings != null && options.StopStrings.Count > 0)
            {
                var p = new IntPtr[options.StopStrings.Count];
                for (int i = 0; i < p.Length; i++) p[i] = arena.Z(options.StopStrings[i] ?? string.Empty);
                o.stop_strings = arena.Pointers(p);
                o.n_stop_strings = Check.Size(p.Length);
            }
            o.sampler = options.Sampler == null ? IntPtr.Zero : options.Sampler.ToNative(arena);
            o.reseed = options.Seed.HasValue ? 1 : 0;
            o.seed = options.Seed.HasValue ? options.Seed.Value : 0;
            o.grammar = options.Grammar == null ? IntPtr.Zero : arena.Handle(options.Grammar.LiveHandle);
            o.grammar_scope = (int)options.GrammarScope;
            if (options.Tools != null && options.Tools.Count > 0)
            {
                var t = new sibyl_tool[options.Tools.Count];
                for (int i = 0; i < t.Length; i++)
                {
                    Tool tool = options.Tools[i];
                    if (tool == null) throw new ArgumentException("Tools[" + i + "] is null");
                    t[i].name = arena.Z(tool.Name ?? string.Empty);
                    t[i].description = arena.Z(tool.Description);
                    t[i].parameters = arena.Z(tool.Parameters);
                }
                o.tools = arena.Structs(t);
                o.n_tools = Check.Size(t.Length);
            }
            o.tool_choice = (int)options.ToolChoice;
            o.tool_name = arena.Z(options.ToolName);
            return o;
        }
    }

    /// <summary>What a blocking chat / generate call collects; reached from the callbacks through a GCHandle.</summary>
    internal sealed class BlockingState
    {
        public readonly StringBuilder Reasoning = new StringBuilder();
        public readonly StringBuilder Answer = new StringBuilder();
        public readonly List<ToolCall> ToolCalls = new List<ToolCall>();
        public readonly List<int> Tokens = new List<int>();
        public Action<Channel, string> OnText;
        public Action<int> OnToken;
        public Exception Error;
    }

    /// <summary>What a request with a callback needs when the library calls it (never the Request itself).</summary>
    internal sealed class RequestState
    {
        public Action<Event> OnEvent;
        public volatile bool Done;
        public volatile Exception Error;
    }

    internal static class Callbacks
    {
        // Static delegate instances: alive for the whole process, so the function pointers handed
        // to the library never dangle. What each call works on comes from user_data.
        public static readonly TextFn Text = OnText;
        public static readonly ToolCallFn ToolCall = OnToolCall;
        public static readonly TokenFn Token = OnToken;
        public static readonly EventFn Event = OnEvent;
        public static readonly IntPtr ToolCallPointer = Marshal.GetFunctionPointerForDelegate(ToolCall);
        public static readonly IntPtr EventPointer = Marshal.GetFunctionPointerForDelegate(Event);

        private static T Target<T>(IntPtr userData) where T : class
        {
            return userData == IntPtr.Zero ? null : GCHandle.FromIntPtr(userData).Target as T;
        }

        [MonoPInvokeCallback(typeof(TextFn))]
        private static int OnText(int channel, IntPtr piece, UIntPtr pieceLen, IntPtr userData)
        {
            BlockingState s = Target<BlockingState>(userData);
            if (s == null) return 1;
            try
            {
                string text = Utf8.FromPtr(piece, pieceLen);
                (channel == (int)Channel.Reasoning ? s.Reasoning : s.Answer).Append(text);
                if (s.OnText != null) s.OnText((Channel)channel, text);
                return 0;
            }
            catch (Exception e)
            {
                s.Error = e;
                return 1;
            }
        }

        [MonoPInvokeCallback(typeof(ToolCallFn))]
        private static int OnToolCall(IntPtr name, UIntPtr nameLen, IntPtr arguments, UIntPtr argumentsLen, IntPtr userData)
        {
            BlockingState s = Target<BlockingState>(userData);
            if (s == null) return 1;
            try
            {
                var call = new ToolCall(Utf8.FromPtr(name, nameLen), Utf8.FromPtr(arguments, argumentsLen));
                s.ToolCalls.Add(call);
                return 0;
            }
            catch (Exception e)
            {
                s.Error = e;
                return 1;
            }
        }

        [MonoPInvokeCallback(typeof(TokenFn))]
        private static int OnToken(int token, IntPtr userData)
        {
            BlockingState s = Target<BlockingState>(userData);
            if (s == null) return 1;
            try
            {
                s.Tokens.Add(token);
                if (s.OnToken != null) s.OnToken(token);
                return 0;
            }
            catch (Exception e)
            {
                s.Error = e;
                return 1;
            }
        }

        [MonoPInvokeCallback(typeof(EventFn))]
        private static void OnEvent(IntPtr evt, IntPtr userData)
        {
            RequestState s = Target<RequestState>(userData);
            if (s == null || evt == IntPtr.Zero) return;
            try
            {
                var raw = (sibyl_event)Marshal.PtrToStructure(evt, typeof(sibyl_event));
                Sibyl.Event e = Sibyl.Event.FromNative(ref raw);
                if (e.IsDone) s.Done = true;
                if (s.OnEvent != null) s.OnEvent(e);
            }
            catch (Exception e)
            {
                if (s.Error == null) s.Error = e;  // the first one; never unwind into native code
            }
        }
    }
}
