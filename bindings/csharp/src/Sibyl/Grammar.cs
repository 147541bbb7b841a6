// Grammar.cs — compiled grammars for constrained decoding (JSON Schema or GBNF).
using System;
using Sibyl.Interop;

namespace Sibyl
{
    /// <summary>
    /// A compiled grammar: chats and generations that use it follow it exactly. Compile once
    /// (e.g. at start-up) and use it from any number of sessions, models and threads; a submitted
    /// request keeps what it needs, so the grammar may be disposed while requests run.
    /// </summary>
    public sealed class Grammar : IDisposable
    {
        private readonly GrammarHandle handle;

        private Grammar(IntPtr raw) { handle = new GrammarHandle(raw); }

        /// <summary>From a JSON Schema (the subset docs/STRUCTURED_OUTPUT.md lists): the JSON texts it accepts.</summary>
        public static Grammar FromJsonSchema(string schema)
        {
            if (schema == null) throw new ArgumentNullException("schema");
            Layout.EnsureChecked();
            IntPtr raw;
            Check.Ok(Native.sibyl_grammar_from_json_schema(Utf8.Z(schema), out raw));
            return new Grammar(raw);
        }

        /// <summary>From GBNF text (llama.cpp's format); root names the start rule (null: "root").</summary>
        public static Grammar FromGbnf(string gbnf, string root = null)
        {
            if (gbnf == null) throw new ArgumentNullException("gbnf");
            Layout.EnsureChecked();
            IntPtr raw;
            Check.Ok(Native.sibyl_grammar_from_gbnf(Utf8.Z(gbnf), Utf8.Z(root), out raw));
            return new Grammar(raw);
        }

        /// <summary>The GBNF a JSON Schema compiles to.</summary>
        public static string JsonSchemaToGbnf(string schema)
        {
            if (schema == null) throw new ArgumentNullException("schema");
            Layout.EnsureChecked();
            byte[] s = Utf8.Z(schema);
            return Text.Read((byte[] b, UIntPtr c, out UIntPtr n) => Native.sibyl_json_schema_to_gbnf(s, b, c, out n));
        }

        /// <summary>Compute the token masks near the grammar's start for model's vocabulary now, not at first use.</summary>
        public void Prepare(Model model, GrammarScope scope = GrammarScope.Answer)
        {
            if (model == null) throw new ArgumentNullException("model");
            Check.Ok(Native.sibyl_grammar_prepare(LiveHandle, model.LiveHandle, (int)scope));
        }

        /// <summary>The owning SafeHandle (for advanced interop).</summary>
        public GrammarHandle Handle { get { return handle; } }

        public bool IsDisposed { get { return handle.IsClosed; } }

        internal GrammarHandle LiveHandle
        {
            get
            {
                if (handle.IsClosed) throw new ObjectDisposedException("Sibyl.Grammar");
                return handle;
            }
        }

        public void Dispose() { handle.Dispose(); }
    }
}
