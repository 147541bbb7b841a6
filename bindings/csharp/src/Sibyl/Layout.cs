// Layout.cs — checks the C# mirrors of sibyl.h's structs against the library actually loaded,
// through the layout functions of ABI 0.8 (sibyl_struct_size / _offset / _field), before the
// first call that passes a struct. A mismatch (a library built from another header, a 32-bit
// library under a 64-bit runtime, a mirror with a field missing) is a SibylLayoutException
// naming every difference, never memory corruption.
using System;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;

namespace Sibyl.Interop
{
    public static class Layout
    {
        /// <summary>The ABI this binding mirrors: 0.8 (minor versions of the library only add).</summary>
        public const uint AbiMajor = 0, AbiMinor = 8;

        private static readonly object Gate = new object();
        private static bool checkedOk;

        /// <summary>Every struct the binding mirrors, by its C name.</summary>
        public static IDictionary<string, Type> Mirrors
        {
            get
            {
                return new Dictionary<string, Type>
                {
                    { "sibyl_vulkan_device", typeof(sibyl_vulkan_device) },
                    { "sibyl_model_options", typeof(sibyl_model_options) },
                    { "sibyl_model_info", typeof(sibyl_model_info) },
                    { "sibyl_session_options", typeof(sibyl_session_options) },
                    { "sibyl_logit_bias", typeof(sibyl_logit_bias) },
                    { "sibyl_sampler_options", typeof(sibyl_sampler_options) },
                    { "sibyl_generate_options", typeof(sibyl_generate_options) },
                    { "sibyl_chat_message", typeof(sibyl_chat_message) },
                    { "sibyl_tool", typeof(sibyl_tool) },
                    { "sibyl_tool_call", typeof(sibyl_tool_call) },
                    { "sibyl_chat_options", typeof(sibyl_chat_options) },
                    { "sibyl_chat_result", typeof(sibyl_chat_result) },
                    { "sibyl_event", typeof(sibyl_event) },
                    { "sibyl_request_options", typeof(sibyl_request_options) },
                    { "sibyl_step_report", typeof(sibyl_step_report) },
                };
            }
        }

        /// <summary>
        /// Checks the library's ABI version and every mirror once per process (later calls return
        /// at once). The binding calls it before its first use of the library.
        /// </summary>
        public static void EnsureChecked()
        {
            if (checkedOk) return;
            lock (Gate)
            {
                if (checkedOk) return;
                CheckAll();
                checkedOk = true;
            }
        }

        /// <summary>Checks the ABI version and every mirror now; throws SibylLayoutException listing the differences.</summary>
        public static void CheckAll()
        {
            uint abi;
            try
            {
                abi = Native.sibyl_abi_version();
            }
            catch (DllNotFoundException e)
            {
                throw new DllNotFoundException(
                    "Sibyl: the native library 'sibyl' (libsibyl.so / libsibyl.dylib / sibyl.dll) was not found. " +
                    "Put it beside the program or on the loader's path (LD_LIBRARY_PATH on Linux, PATH on Windows; " +
                    "Unity: Assets/Plugins). " + e.Message, e);
            }
            if (abi / 10000 != AbiMajor || abi / 100 % 100 < AbiMinor)
                throw new SibylLayoutException("Sibyl: the native library's ABI is " + FormatAbi(abi) +
                                               "; this binding needs " + AbiMajor + "." + AbiMinor + " or a later " +
                                               AbiMajor + ".x");
            var problems = new List<string>();
            foreach (KeyValuePair<string, Type> m in Mirrors) Compare(m.Key, m.Value, problems);
            if (problems.Count > 0) throw Mismatch(problems);
        }

        /// <summary>
        /// Compares one mirror type with the library's struct `cName`: the size, and every field
        /// both ways (same names, same offsets). Public so that a test can show a wrong mirror is refused.
        /// </summary>
        public static void CheckMirror(string cName, Type mirror)
        {
            var problems = new List<string>();
            Compare(cName, mirror, problems);
            if (problems.Count > 0) throw Mismatch(problems);
        }

        private static SibylLayoutException Mismatch(List<string> problems)
        {
            var sb = new StringBuilder("Sibyl: the C# struct mirrors do not match the loaded native library " +
                                       "(a library built from another sibyl.h?); refusing to call it:");
            foreach (string p in problems) sb.Append("\n  ").Append(p);
            return new SibylLayoutException(sb.ToString());
        }

        private static string FormatAbi(uint abi) { return (abi / 10000) + "." + (abi / 100 % 100) + "." + (abi % 100); }

        private static void Compare(string cName, Type mirror, List<string> problems)
        {
            byte[] name = Utf8.Z(cName);
            ulong size = Native.sibyl_struct_size(name).ToUInt64();
            if (size == 0)
            {
                problems.Add(cName + ": the library does not know this struct");
                return;
            }
            int managedSize = Marshal.SizeOf(mirror);
            if ((ulong)managedSize != size)
                problems.Add(cName + ": size " + managedSize + " in C#, " + size + " in the library");

            var libraryFields = new List<string>();
            for (uint i = 0; ; i++)
            {
                string field = Utf8.FromZ(Native.sibyl_struct_field(name, new UIntPtr(i)));
                if (field == null) break;
                libraryFields.Add(field);
            }
            FieldInfo[] fields = mirror.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
            var mirrorFields = new HashSet<string>();
            foreach (FieldInfo f in fields) mirrorFields.Add(f.Name);
            foreach (string field in libraryFields)
            {
                if (!mirrorFields.Contains(field))
                {
                    problems.Add(cName + "." + field + ": missing in the C# mirror " + mirror.Name);
                    continue;
                }
                ulong offset = Native.sibyl_struct_offset(name, Utf8.Z(field)).ToUInt64();
                long managed = Marshal.OffsetOf(mirror, field).ToInt64();
                if ((ulong)managed != offset)
                    problems.Add(cName + "." + field + ": offset " + managed + " in C#, " + offset + " in the library");
            }
            foreach (FieldInfo f in fields)
                if (!libraryFields.Contains(f.Name))
                    problems.Add(cName + "." + f.Name + ": in the C# mirror " + mirror.Name + " but not in the library");
        }
    }
}
