// Interop.cs — SafeHandles owning the library's objects, UTF-8 helpers, the native memory
// an options struct points into, and the error check every call goes through.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Sibyl.Interop
{
    /// <summary>Owns a sibyl_model*: sibyl_model_destroy when disposed or finalized.</summary>
    public sealed class ModelHandle : SafeHandle
    {
        internal ModelHandle(IntPtr handle) : base(IntPtr.Zero, true) { SetHandle(handle); }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.sibyl_model_destroy(handle); return true; }
    }

    /// <summary>Owns a sibyl_session*: sibyl_session_destroy (which cancels a running request).</summary>
    public sealed class SessionHandle : SafeHandle
    {
        internal SessionHandle(IntPtr handle) : base(IntPtr.Zero, true) { SetHandle(handle); }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.sibyl_session_destroy(handle); return true; }
    }

    /// <summary>Owns a sibyl_grammar*: sibyl_grammar_destroy (requests keep what they use).</summary>
    public sealed class GrammarHandle : SafeHandle
    {
        internal GrammarHandle(IntPtr handle) : base(IntPtr.Zero, true) { SetHandle(handle); }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.sibyl_grammar_destroy(handle); return true; }
    }

    /// <summary>
    /// Owns a sibyl_request* and the GCHandle its callback's user_data points to. Release
    /// destroys the request first — sibyl_request_destroy returns only once the callback is not
    /// running and will never run again — and only then frees the GCHandle, so the managed
    /// callback stays reachable for exactly as long as the library may call it, also when the
    /// Request was dropped without Dispose and this runs on the finalizer thread.
    /// </summary>
    public sealed class RequestHandle : SafeHandle
    {
        private GCHandle callbackState;

        internal RequestHandle(IntPtr handle, GCHandle callbackState) : base(IntPtr.Zero, true)
        {
            this.callbackState = callbackState;
            SetHandle(handle);
        }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            Native.sibyl_request_destroy(handle);
            if (callbackState.IsAllocated) callbackState.Free();
            return true;
        }
    }

    internal static class Utf8
    {
        private static readonly UTF8Encoding Strict = new UTF8Encoding(false, false);

        /// <summary>NUL-terminated UTF-8 bytes of s; null for null.</summary>
        public static byte[] Z(string s)
        {
            if (s == null) return null;
            int n = Strict.GetByteCount(s);
            byte[] b = new byte[n + 1];
            Strict.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        public static byte[] Bytes(string s) { return s == null ? new byte[0] : Strict.GetBytes(s); }

        public static string Decode(byte[] bytes, int count) { return Strict.GetString(bytes, 0, count); }

        /// <summary>`length` bytes at p as a string ("" for NULL or 0).</summary>
        public static string FromPtr(IntPtr p, UIntPtr length)
        {
            int n = checked((int)length.ToUInt64());
            if (p == IntPtr.Zero || n == 0) return string.Empty;
            byte[] b = new byte[n];
            Marshal.Copy(p, b, 0, n);
            return Strict.GetString(b);
        }

        /// <summary>A NUL-terminated C string at p (null for NULL).</summary>
        public static string FromZ(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            return FromPtr(p, new UIntPtr((uint)n));
        }
    }

    /// <summary>
    /// Unmanaged memory that an options struct points into (strings, arrays, nested structs),
    /// freed together when the call that reads it is over.
    /// </summary>
    internal sealed class Arena : IDisposable
    {
        private readonly List<IntPtr> blocks = new List<IntPtr>();
        private readonly List<SafeHandle> refs = new List<SafeHandle>();

        public IntPtr Alloc(int bytes)
        {
            IntPtr p = Marshal.AllocHGlobal(Math.Max(bytes, 1));
            blocks.Add(p);
            return p;
        }

        public IntPtr Bytes(byte[] b)
        {
            if (b == null) return IntPtr.Zero;
            IntPtr p = Alloc(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            return p;
        }

        /// <summary>A NUL-terminated UTF-8 copy of s (NULL for null).</summary>
        public IntPtr Z(string s) { return s == null ? IntPtr.Zero : Bytes(Utf8.Z(s)); }

        public IntPtr Int32s(int[] values)
        {
            if (values == null || values.Length == 0) return IntPtr.Zero;
            IntPtr p = Alloc(values.Length * 4);
            Marshal.Copy(values, 0, p, values.Length);
            return p;
        }

        public IntPtr Pointers(IntPtr[] values)
        {
            if (values == null || values.Length == 0) return IntPtr.Zero;
            IntPtr p = Alloc(values.Length * IntPtr.Size);
            Marshal.Copy(values, 0, p, values.Length);
            return p;
        }

        /// <summary>A C array of the structs (NULL when empty).</summary>
        public IntPtr Structs<T>(T[] values) where T : struct
        {
            if (values == null || values.Length == 0) return IntPtr.Zero;
            int size = Marshal.SizeOf(typeof(T));
            IntPtr p = Alloc(size * values.Length);
            for (int i = 0; i < values.Length; i++)
                Marshal.StructureToPtr(values[i], new IntPtr(p.ToInt64() + (long)i * size), false);
            return p;
        }

        public IntPtr Struct<T>(T value) where T : struct { return Structs(new T[] { value }); }

        /// <summary>The raw pointer of a handle, kept from being released until the arena is disposed.</summary>
        public IntPtr Handle(SafeHandle h)
        {
            if (h == null) return IntPtr.Zero;
            bool added = false;
            h.DangerousAddRef(ref added);
            if (added) refs.Add(h);
            return h.DangerousGetHandle();
        }

        public void Dispose()
        {
            foreach (IntPtr p in blocks) Marshal.FreeHGlobal(p);
            blocks.Clear();
            foreach (SafeHandle h in refs) h.DangerousRelease();
            refs.Clear();
        }
    }

    internal static class Check
    {
        /// <summary>Throws SibylException with the library's message unless status is SIBYL_OK.</summary>
        public static void Ok(int status)
        {
            if (status == 0) return;
            throw Error(status);
        }

        /// <summary>The exception for a failed call; reads the thread's last error message now.</summary>
        public static SibylException Error(int status)
        {
            string message = Utf8.FromZ(Native.sibyl_last_error_message());
            return new SibylException((Status)status, message);
        }

        public static UIntPtr Size(int n) { return new UIntPtr((uint)n); }
        public static UIntPtr Size(long n) { return new UIntPtr((ulong)n); }
        public static int Int(UIntPtr n) { return checked((int)n.ToUInt64()); }
    }

    /// <summary>The two-call rule of the text outputs: ask the size, then fill a buffer of it.</summary>
    internal delegate int TextOut(byte[] buffer, UIntPtr capacity, out UIntPtr length);

    internal static class Text
    {
        public static string Read(TextOut call)
        {
            UIntPtr length;
            int st = call(null, UIntPtr.Zero, out length);
            if (st != 0 && st != (int)Status.BufferTooSmall) throw Check.Error(st);
            for (int attempt = 0; attempt < 4; attempt++)
            {
                int n = Check.Int(length);
                byte[] buffer = new byte[n + 1];
                st = call(buffer, Check.Size(buffer.Length), out length);
                if (st == 0) return Utf8.Decode(buffer, Check.Int(length));
                if (st != (int)Status.BufferTooSmall) throw Check.Error(st);
            }
            throw new SibylException(Status.BufferTooSmall, "the text kept growing between calls");
        }
    }
}
