// Library.cs — process-wide functions: versions, status names, the default model, logging.
using System;
using Sibyl.Interop;

namespace Sibyl
{
    public static class Library
    {
        /// <summary>The native library's ABI version: major * 10000 + minor * 100 + patch.</summary>
        public static uint AbiVersion
        {
            get
            {
                Layout.EnsureChecked();
                return Native.sibyl_abi_version();
            }
        }

        /// <summary>The native library's version, e.g. "0.8.0".</summary>
        public static string Version
        {
            get
            {
                Layout.EnsureChecked();
                return Utf8.FromZ(Native.sibyl_version_string());
            }
        }

        /// <summary>A status's short English name, e.g. "invalid argument".</summary>
        public static string StatusString(Status status)
        {
            try
            {
                return Utf8.FromZ(Native.sibyl_status_string((int)status));
            }
            catch (Exception)  // no native library to ask (the exception that says so comes elsewhere)
            {
                return status.ToString();
            }
        }

        /// <summary>
        /// The directory of the default model (the embedded tiny-reasoner), as `new Model()` finds
        /// it: $SIBYL_DEFAULT_MODEL, beside the installed library, or the source tree it was built from.
        /// SibylException (Status.Io) naming the places searched when there is none.
        /// </summary>
        public static string DefaultModelPath
        {
            get
            {
                Layout.EnsureChecked();
                return Text.Read(Native.sibyl_default_model_path);
            }
        }

        private static volatile Action<LogLevel, string> logHandler;
        private static readonly LogFn LogThunk = OnLog;  // static: alive for the whole process

        /// <summary>
        /// Route the library's log messages of minLevel and above to handler, which may run on any
        /// thread (a library worker), concurrently; keep it short and thread-safe. null restores the
        /// default (warnings and errors to stderr). Exceptions it throws are swallowed.
        /// </summary>
        public static void SetLogCallback(Action<LogLevel, string> handler, LogLevel minLevel)
        {
            Layout.EnsureChecked();
            logHandler = handler;
            Native.sibyl_set_log_callback(handler == null ? null : LogThunk, IntPtr.Zero, (int)minLevel);
        }

        [MonoPInvokeCallback(typeof(LogFn))]
        private static void OnLog(int level, IntPtr message, IntPtr userData)
        {
            Action<LogLevel, string> h = logHandler;
            if (h == null) return;
            try
            {
                h((LogLevel)level, Utf8.FromZ(message));
            }
            catch (Exception)
            {
                // never let an exception unwind into native code
            }
        }
    }
}
