// MiniJson.cs — just enough JSON for the tests (objects -> Dictionary<string, object>, arrays ->
// List<object>, numbers -> double, strings, bools, null); Mono's profile here has no JSON reader.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Sibyl.Tests
{
    internal sealed class MiniJson
    {
        private readonly string s;
        private int i;

        private MiniJson(string text) { s = text; }

        public static object Parse(string text)
        {
            var p = new MiniJson(text);
            object v = p.Value();
            p.Space();
            if (p.i != p.s.Length) throw new FormatException("JSON: trailing text at " + p.i);
            return v;
        }

        private void Space() { while (i < s.Length && char.IsWhiteSpace(s[i])) i++; }

        private object Value()
        {
            Space();
            if (i >= s.Length) throw new FormatException("JSON: unexpected end");
            char c = s[i];
            if (c == '{') return Obj();
            if (c == '[') return Arr();
            if (c == '"') return Str();
            if (string.CompareOrdinal(s, i, "true", 0, 4) == 0) { i += 4; return true; }
            if (string.CompareOrdinal(s, i, "false", 0, 5) == 0) { i += 5; return false; }
            if (string.CompareOrdinal(s, i, "null", 0, 4) == 0) { i += 4; return null; }
            int start = i;
            while (i < s.Length && "+-0123456789.eE".IndexOf(s[i]) >= 0) i++;
            if (start == i) throw new FormatException("JSON: unexpected '" + c + "' at " + i);
            return double.Parse(s.Substring(start, i - start), CultureInfo.InvariantCulture);
        }

        private Dictionary<string, object> Obj()
        {
            var o = new Dictionary<string, object>();
            i++;
            Space();
            if (s[i] == '}') { i++; return o; }
            while (true)
            {
                Space();
                string key = Str();
                Space();
                Expect(':');
                o[key] = Value();
                Space();
                if (s[i] == ',') { i++; continue; }
                Expect('}');
                return o;
            }
        }

        private List<object> Arr()
        {
            var a = new List<object>();
            i++;
            Space();
            if (s[i] == ']') { i++; return a; }
            while (true)
            {
                a.Add(Value());
                Space();
                if (s[i] == ',') { i++; continue; }
                Expect(']');
                return a;
            }
        }

        private string Str()
        {
            Expect('"');
            var b = new StringBuilder();
            while (true)
            {
                char c = s[i++];
                if (c == '"') return b.ToString();
                if (c != '\\') { b.Append(c); continue; }
                char e = s[i++];
                switch (e)
                {
                    case 'n': b.Append('\n'); break;
                    case 't': b.Append('\t'); break;
                    case 'r': b.Append('\r'); break;
                    case 'b': b.Append('\b'); break;
                    case 'f': b.Append('\f'); break;
                    case 'u': b.Append((char)int.Parse(s.Substring(i, 4), NumberStyles.HexNumber)); i += 4; break;
                    default: b.Append(e); break;
                }
            }
        }

        private void Expect(char c)
        {
            if (i >= s.Length || s[i] != c) throw new FormatException("JSON: expected '" + c + "' at " + i);
            i++;
        }
    }
}
