// SibylTests.cs — the C# binding's test program (plain console program, no test framework):
// compiled with Mono's mcs against Sibyl.dll and run with mono by CTest (csharp_binding).
//
//   mono SibylTests.exe [--eval PATH/eval.public.json] [--problems N]
//   env: LD_LIBRARY_PATH (where libsibyl.so is), SIBYL_TOOL_MODEL (optional: a model whose
//        template has tool calls, e.g. the tool_v3 fixture; without it the tool checks skip)
//
// It runs the checks the Python binding's tests run: a sample of eval.public.json reproduced
// blocking, streamed and through submit/poll; save -> load continues exactly; cancel; tokenize
// against the eval prompt ids; errors; callbacks of dropped owners never called; the layout check.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using Sibyl;
using Sibyl.Interop;

namespace Sibyl.Tests
{
    internal sealed class CheckFailed : Exception
    {
        public CheckFailed(string message) : base(message) { }
    }

    internal static class T
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new CheckFailed(what);
        }

        public static void Equal<TV>(TV expected, TV actual, string what)
        {
            if (!EqualityComparer<TV>.Default.Equals(expected, actual))
                throw new CheckFailed(what + ": expected <" + expected + ">, got <" + actual + ">");
        }

        public static void Seq<TV>(IList<TV> expected, IList<TV> actual, string what)
        {
            if (expected.Count != actual.Count || !expected.SequenceEqual(actual))
                throw new CheckFailed(what + ": expected [" + string.Join(",", expected) + "], got [" +
                                      string.Join(",", actual) + "]");
        }

        /// <summary>Runs f, which must throw TE; returns it.</summary>
        public static TE Throws<TE>(Action f, string what) where TE : Exception
        {
            try
            {
                f();
            }
            catch (TE e)
            {
                return e;
            }
            catch (Exception e)
            {
                throw new CheckFailed(what + ": expected " + typeof(TE).Name + ", got " + e.GetType().Name + ": " + e.Message);
            }
            throw new CheckFailed(what + ": expected " + typeof(TE).Name + ", nothing was thrown");
        }

        public static SibylException Status(Status expected, Action f, string what)
        {
            SibylException e = Throws<SibylException>(f, what);
            Equal(expected, e.Status, what + " (status; message: " + e.Message + ")");
            return e;
        }
    }

    internal sealed class EvalProblem
    {
        public int Index;
        public string Question;
        public int[] PromptIds;
        public int[] OutputIds;
        public string OutputText;
        public string Key;

        /// <summary>The reference text split at &lt;/think&gt;, without the tags and the format's blank lines.</summary>
        public string Reasoning { get { return OutputText.Substring(0, OutputText.IndexOf("</think>", StringComparison.Ordinal)).TrimEnd('\n'); } }

        public string Answer
        {
            get
            {
                string rest = OutputText.Substring(OutputText.IndexOf("</think>", StringComparison.Ordinal) + "</think>".Length).TrimStart('\n');
                const string eos = "<｜end▁of▁sentence｜>";
                return rest.EndsWith(eos, StringComparison.Ordinal) ? rest.Substring(0, rest.Length - eos.Length) : rest;
            }
        }
    }

    /// <summary>A deliberately wrong mirror of sibyl_step_report: two fields swapped.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct SwappedStepReport
    {
        public uint struct_size;
        public uint sequences;
        public uint rows;
        public uint pending;
        public long elapsed_us;
        public int overrun;
    }

    /// <summary>A wrong mirror of sibyl_step_report: a field missing (and so the size off).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ShortStepReport
    {
        public uint struct_size;
        public uint rows;
        public uint sequences;
        public uint pending;
        public ulong elapsed_us;
    }

    /// <summary>A wrong mirror of sibyl_logit_bias: a field the library does not have.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ExtraLogitBias
    {
        public int token;
        public float bias;
        public int weight;
    }

    internal static class Program
    {
        private static readonly List<string> Failures = new List<string>();
        private static int passed, skipped;
        private static Model model;
        private static List<EvalProblem> problems;

        private static int Main(string[] args)
        {
            string evalPath = null;
            int count = 20;
            for (int a = 0; a < args.Length; a++)
            {
                if (args[a] == "--eval" && a + 1 < args.Length) evalPath = args[++a];
                else if (args[a] == "--problems" && a + 1 < args.Length) count = int.Parse(args[++a]);
            }
            var total = Stopwatch.StartNew();
            Run("layout check passes on the real library and ABI >= 0.8", LayoutPasses);
            Run("layout check refuses wrong mirrors", LayoutRefusesWrongMirrors);
            Run("default model loads (new Model())", () =>
            {
                model = new Model();
                ModelInfo info = model.Info;
                T.Equal("deepseek_v3", info.Architecture, "architecture");
                T.True(info.VocabSize > 1000, "vocab size " + info.VocabSize);
                T.True(Directory.Exists(Library.DefaultModelPath), "default model path " + Library.DefaultModelPath);
            });
            if (model == null)
            {
                Console.WriteLine("no model: stopping");
                return Finish(total);
            }
            if (evalPath == null) evalPath = Path.Combine(Library.DefaultModelPath, "eval.public.json");
            Run("eval sample loads", () => { problems = LoadEval(evalPath, count); });
            if (problems != null)
            {
                Run("tokenize(render_chat) == eval prompt_ids; detokenize round trip", TokenizeMatchesEval);
                Run("eval sample reproduced: blocking Chat", () => EvalReproduced(Mode.Blocking));
                Run("eval sample reproduced: Chat with an onText callback", () => EvalReproduced(Mode.Callback));
                Run("eval sample reproduced: ChatStream (IEnumerable)", () => EvalReproduced(Mode.Stream));
                Run("eval sample reproduced: SubmitChat + Poll", () => EvalReproduced(Mode.Poll));
                Run("eval sample reproduced: SubmitChat with an onEvent callback", () => EvalReproduced(Mode.EventCallback));
                Run("Generate / SubmitGenerate give the eval output ids", GenerateMatchesEval);
                Run("save -> load continues exactly (same and new session)", SaveLoadContinues);
                Run("Fork continues like the original", ForkContinues);
            }
            Run("cancel mid-generation (Model.Step loop): Done with Cancelled", CancelWithStep);
            Run("cancel from inside the onText callback: StopReason.Cancelled", CancelFromCallback);
            Run("cancel a submitted request on the worker: Cancelled, session free again", CancelOnWorker);
            Run("errors: bad path is Io with the library's message", BadPath);
            Run("errors: disposed session/request/model throw, never crash", DisposedObjects);
            Run("errors: busy session, bad grammar, destroyed model, bad state", LibraryErrors);
            Run("a dropped request's callback is never called after GC", DroppedCallbackNeverCalled);
            Run("exceptions in callbacks are caught and reported", CallbackExceptions);
            Run("grammars: JSON Schema and GBNF constrain the answer", Grammars);
            Run("sampling: seeded runs repeat; logit bias bans a token; Append/Logits/Sample", Sampling);
            Run("log callback receives messages and can be removed", Logging);
            string toolModel = Environment.GetEnvironmentVariable("SIBYL_TOOL_MODEL");
            if (string.IsNullOrEmpty(toolModel) || !File.Exists(toolModel))
            {
                Console.WriteLine("SKIP tool calls: SIBYL_TOOL_MODEL is not set to a model file (ctest sets it)");
                skipped++;
                Run("tool calls on the tiny-reasoner are a clear Unsupported error", ToolsUnsupportedOnReasoner);
            }
            else
            {
                Run("tool calls on the tiny-reasoner are a clear Unsupported error", ToolsUnsupportedOnReasoner);
                Run("tool calls: blocking, submitted and continued (" + Path.GetFileName(toolModel) + ")", () => ToolCalls(toolModel));
            }
            model.Dispose();
            return Finish(total);
        }

        private static int Finish(Stopwatch total)
        {
            Console.WriteLine("C# binding tests finished in " + total.Elapsed.TotalSeconds.ToString("F1") + " s (library " +
                              SafeVersion() + ", " + (Environment.Is64BitProcess ? "64" : "32") + "-bit Mono " +
                              Environment.Version + ")");
            foreach (string f in Failures) Console.WriteLine("FAILED: " + f);
            Console.WriteLine(passed + " passed, " + Failures.Count + " failed" + (skipped > 0 ? ", " + skipped + " skipped" : ""));
            return Failures.Count == 0 ? 0 : 1;
        }

        private static string SafeVersion()
        {
            try { return Library.Version; } catch (Exception e) { return "unavailable: " + e.Message; }
        }

        private static void Run(string name, Action check)
        {
            var sw = Stopwatch.StartNew();
            try
            {
                check();
                passed++;
                Console.WriteLine("ok   " + name + " (" + sw.ElapsedMilliseconds + " ms)");
            }
            catch (Exception e)
            {
                string why = e is CheckFailed ? e.Message : e.ToString();
                Failures.Add(name + ": " + why);
                Console.WriteLine("FAIL " + name + " (" + sw.ElapsedMilliseconds + " ms)\n     " + why);
            }
        }

        // ------------------------------------------------------------------ layout

        private static void LayoutPasses()
        {
            Layout.CheckAll();
            T.Equal(0u, Library.AbiVersion / 10000, "ABI major");
            T.True(Library.AbiVersion / 100 % 100 >= 8, "ABI minor >= 8: " + Library.AbiVersion);
            T.True(Library.Version.StartsWith("0."), "version " + Library.Version);
            foreach (KeyValuePair<string, Type> m in Layout.Mirrors) Layout.CheckMirror(m.Key, m.Value);
            T.Equal(15, Layout.Mirrors.Count, "mirrored structs");
        }

        private static void LayoutRefusesWrongMirrors()
        {
            SibylLayoutException e = T.Throws<SibylLayoutException>(
                () => Layout.CheckMirror("sibyl_step_report", typeof(SwappedStepReport)), "swapped fields");
            T.True(e.Message.Contains("sibyl_step_report.rows") && e.Message.Contains("offset"), "names the field: " + e.Message);
            e = T.Throws<SibylLayoutException>(() => Layout.CheckMirror("sibyl_step_report", typeof(ShortStepReport)), "missing field");
            T.True(e.Message.Contains("overrun: missing"), "names the missing field: " + e.Message);
            T.True(e.Message.Contains("size"), "names the size: " + e.Message);
            e = T.Throws<SibylLayoutException>(() => Layout.CheckMirror("sibyl_logit_bias", typeof(ExtraLogitBias)), "extra field");
            T.True(e.Message.Contains("weight") && e.Message.Contains("not in the library"), "names the extra field: " + e.Message);
            e = T.Throws<SibylLayoutException>(() => Layout.CheckMirror("sibyl_no_such_struct", typeof(ShortStepReport)), "unknown struct");
            T.True(e.Message.Contains("does not know"), e.Message);
            T.True(e is SibylException, "a SibylException");
        }

        // ------------------------------------------------------------------ eval

        private static List<EvalProblem> LoadEval(string path, int count)
        {
            var root = (Dictionary<string, object>)MiniJson.Parse(File.ReadAllText(path, Encoding.UTF8));
            var results = (List<object>)root["results"];
            var picked = new List<EvalProblem>();
            count = Math.Min(count, results.Count);
            for (int k = 0; k < count; k++)
            {
                int index = (int)((long)k * results.Count / count);  // spread over the file
                var r = (Dictionary<string, object>)results[index];
                picked.Add(new EvalProblem
                {
                    Index = index,
                    Question = (string)r["question"],
                    PromptIds = ((List<object>)r["prompt_ids"]).Select(x => (int)(double)x).ToArray(),
                    OutputIds = ((List<object>)r["output_ids"]).Select(x => (int)(double)x).ToArray(),
                    OutputText = (string)r["output_text"],
                    Key = (string)r["key"],
                });
            }
            T.Equal(count, picked.Count, "problems");
            var tasks = new HashSet<string>();
            foreach (object o in results) tasks.Add((string)((Dictionary<string, object>)o)["task"]);
            T.True(tasks.Count >= 5, "the file has several task families");
            return picked;
        }

        private static void TokenizeMatchesEval()
        {
            foreach (EvalProblem p in problems)
            {
                string prompt = model.RenderChat(new[] { ChatMessage.User(p.Question) });
                T.Seq(p.PromptIds, model.Tokenize(prompt), "tokenize(render_chat) of #" + p.Index + " " + p.Question);
                T.Equal(prompt, model.Detokenize(p.PromptIds), "detokenize(prompt_ids) #" + p.Index);
                T.Equal(p.OutputText, model.Detokenize(p.OutputIds), "detokenize(output_ids) #" + p.Index);
            }
            T.Equal(0, model.Tokenize("").Length, "empty text");
            byte[] bytes = model.TokenBytes(problems[0].OutputIds[0]);
            T.True(bytes.Length > 0, "token bytes");
        }

        private enum Mode { Blocking, Callback, Stream, Poll, EventCallback }

        private static void EvalReproduced(Mode mode)
        {
            using (var session = new Session(model))
            {
                foreach (EvalProblem p in problems)
                {
                    var messages = new[] { ChatMessage.User(p.Question) };
                    var opts = new ChatOptions { MaxNewTokens = 400 };
                    string reasoning, answer;
                    StopReason stop;
                    int generated;
                    var pieces = new StringBuilder[] { new StringBuilder(), new StringBuilder() };
                    switch (mode)
                    {
                        case Mode.Blocking:
                        {
                            ChatReply r = session.Chat(messages, opts);
                            reasoning = r.Reasoning;
                            answer = r.Answer;
                            stop = r.StopReason;
                            generated = r.GeneratedTokens;
                            T.Equal(r.ReasoningTokens + r.AnswerTokens, r.GeneratedTokens, "reasoning + answer tokens");
                            T.Equal(p.PromptIds.Length, r.PromptTokens + r.ReusedTokens, "prompt + reused tokens");
                            T.Equal(0, r.ToolCalls.Count, "no tool calls");
                            break;
                        }
                        case Mode.Callback:
                        {
                            int calls = 0;
                            ChatReply r = session.Chat(messages, opts, (ch, piece) =>
                            {
                                calls++;
                                pieces[(int)ch].Append(piece);
                            });
                            T.True(calls > 2, "streamed in pieces: " + calls);
                            T.Equal(r.Reasoning, pieces[0].ToString(), "callback reasoning == reply reasoning");
                            T.Equal(r.Answer, pieces[1].ToString(), "callback answer == reply answer");
                            reasoning = r.Reasoning;
                            answer = r.Answer;
                            stop = r.StopReason;
                            generated = r.GeneratedTokens;
                            break;
                        }
                        case Mode.Stream:
                        {
                            stop = StopReason.Error;
                            int events = 0;
                            foreach (Event e in session.ChatStream(messages, opts))
                            {
                                events++;
                                if (e.Type == EventType.Text) pieces[(int)e.Channel].Append(e.Text);
                                if (e.IsDone) stop = e.StopReason;
                            }
                            T.True(events > 2, "events " + events);
                            reasoning = pieces[0].ToString();
                            answer = pieces[1].ToString();
                            generated = p.OutputIds.Length;
                            break;
                        }
                        case Mode.Poll:
                        {
                            using (Request request = session.SubmitChat(messages, opts))
                            {
                                stop = StopReason.Error;
                                int polls = 0;
                                while (!request.IsDone)
                                {
                                    Event e = request.Poll();
                                    polls++;
                                    if (e == null)
                                    {
                                        request.Wait(2000);  // a frame's worth of waiting, without spinning
                                        continue;
                                    }
                                    if (e.Type == EventType.Text) pieces[(int)e.Channel].Append(e.Text);
                                    if (e.IsDone)
                                    {
                                        T.Equal(Status.Ok, e.Status, "done status");
                                        stop = e.StopReason;
                                    }
                                }
                                T.True(request.Poll() == null, "nothing after Done");
                                RequestResult res = request.Result;
                                T.Equal(stop, res.StopReason, "result stop reason");
                                generated = res.GeneratedTokens;
                                T.Equal(p.PromptIds.Length, res.PromptTokens + res.ReusedTokens, "prompt + reused");
                                T.True(res.TotalMicroseconds > 0, "latency measured");
                            }
                            reasoning = pieces[0].ToString();
                            answer = pieces[1].ToString();
                            break;
                        }
                        default:
                        {
                            var gate = new object();
                            var done = new ManualResetEvent(false);
                            StopReason seen = StopReason.Error;
                            int threadId = Thread.CurrentThread.ManagedThreadId, otherThread = 0;
                            using (Request request = session.SubmitChat(messages, opts, e =>
                            {
                                lock (gate)
                                {
                                    if (Thread.CurrentThread.ManagedThreadId != threadId) otherThread++;
                                    if (e.Type == EventType.Text) pieces[(int)e.Channel].Append(e.Text);
                                    if (e.IsDone)
                                    {
                                        seen = e.StopReason;
                                        done.Set();
                                    }
                                }
                            }))
                            {
                                T.True(done.WaitOne(30000), "Done arrived");
                                T.True(request.IsDone, "IsDone");
                                T.True(request.Poll() == null, "a callback request queues nothing");
                                T.True(request.CallbackException == null, "callback exception");
                                generated = request.Result.GeneratedTokens;
                            }
                            lock (gate)
                            {
                                T.True(otherThread > 0, "events arrive on the library's worker thread");
                                stop = seen;
                                reasoning = pieces[0].ToString();
                                answer = pieces[1].ToString();
                            }
                            break;
                        }
                    }
                    string what = mode + " #" + p.Index + " " + p.Question;
                    T.Equal(StopReason.Eos, stop, what + ": stop reason");
                    T.Equal(p.Reasoning, reasoning, what + ": reasoning");
                    T.Equal(p.Answer, answer, what + ": answer");
                    T.True(answer.Contains(p.Key), what + ": answer has the key " + p.Key);
                    T.Equal(p.OutputIds.Length, generated, what + ": generated tokens");
                }
            }
        }

        private static void GenerateMatchesEval()
        {
            for (int k = 0; k < 3; k++)
            {
                EvalProblem p = problems[k * problems.Count / 3];
                using (var session = new Session(model))
                {
                    var seen = new List<int>();
                    int[] tokens = session.Generate(p.PromptIds, new GenerateOptions { MaxNewTokens = 400 }, t => seen.Add(t));
                    T.Seq(p.OutputIds, tokens, "Generate #" + p.Index);
                    T.Seq(p.OutputIds, seen, "onToken #" + p.Index);
                    T.Equal(p.PromptIds.Length + p.OutputIds.Length, session.Position, "position");
                }
                using (var session = new Session(model))
                using (Request r = session.SubmitGenerate(p.PromptIds, new GenerateOptions { MaxNewTokens = 400 }))
                {
                    var tokens = new List<int>();
                    Event done = null;
                    while (done == null)
                    {
                        Event e = r.Poll();
                        if (e == null) { r.Wait(-1); continue; }
                        if (e.Type == EventType.Token) tokens.Add(e.Token);
                        if (e.IsDone) done = e;
                    }
                    T.Seq(p.OutputIds, tokens, "SubmitGenerate #" + p.Index);
                    T.Equal(StopReason.Eos, done.StopReason, "stop");
                    T.Equal(p.OutputIds.Length, r.Result.GeneratedTokens, "result count");
                }
            }
        }

        private static void SaveLoadContinues()
        {
            EvalProblem p = problems[problems.Count / 2];
            const int first = 20;
            var opts = new GenerateOptions { MaxNewTokens = first };
            byte[] state;
            int[] rest;
            using (var a = new Session(model))
            {
                int[] head = a.Generate(p.PromptIds, opts);
                T.Seq(p.OutputIds.Take(first).ToList(), head, "first tokens");
                state = a.SaveState();
                T.True(state.Length > 0, "state bytes");
                rest = a.Generate(new int[0], new GenerateOptions { MaxNewTokens = 400 });
                T.Seq(p.OutputIds.Skip(first).ToList(), rest, "the original continues with the reference");
                T.Equal(p.PromptIds.Length + p.OutputIds.Length, a.Position, "position");
                // Load into the same session: back to the saved point, and it continues the same way.
                a.LoadState(state);
                T.Equal(p.PromptIds.Length + first, a.Position, "position after load");
                T.Seq(rest, a.Generate(new int[0], new GenerateOptions { MaxNewTokens = 400 }), "same session after load");
            }
            using (var b = new Session(model))
            {
                b.LoadState(state);
                T.Equal(p.PromptIds.Length + first, b.Position, "loaded position");
                byte[] again = b.SaveState();
                T.Seq(state, again, "save of a loaded state is the same bytes");
                T.Seq(rest, b.Generate(new int[0], new GenerateOptions { MaxNewTokens = 400 }), "a new session continues exactly");
            }
            // Through a chat too: the loaded session's chat reuses the saved prefix.
            using (var c = new Session(model))
            using (var d = new Session(model))
            {
                var conv = new List<ChatMessage> { ChatMessage.User(p.Question) };
                ChatReply r1 = c.Chat(conv);
                d.LoadState(c.SaveState());
                conv.Add(ChatMessage.Assistant(r1.Answer));
                conv.Add(ChatMessage.User(problems[0].Question));
                ChatReply r2c = c.Chat(conv);
                ChatReply r2d = d.Chat(conv);
                T.Equal(r2c.Answer, r2d.Answer, "second turn answer");
                T.Equal(r2c.Reasoning, r2d.Reasoning, "second turn reasoning");
                T.True(r2d.ReusedTokens > 0, "the loaded session reuses its cache: " + r2d.ReusedTokens);
            }
        }

        private static void ForkContinues()
        {
            EvalProblem p = problems[1];
            using (var a = new Session(model))
            {
                a.Append(p.PromptIds);
                using (Session b = a.Fork())
                {
                    T.Equal(a.Position, b.Position, "fork position");
                    T.Seq(p.OutputIds, b.Generate(new int[0], new GenerateOptions { MaxNewTokens = 400 }), "fork");
                    T.Seq(p.OutputIds, a.Generate(new int[0], new GenerateOptions { MaxNewTokens = 400 }), "original");
                }
            }
        }

        // ------------------------------------------------------------------ cancel

        private static void CancelWithStep()
        {
            using (var m = new Model(null, new ModelOptions { WorkerThreads = 0 }))
            using (var s = new Session(m))
            {
                T.Equal(0, m.Info.WorkerThreads, "no worker threads");
                Request r = s.SubmitChat("What is 6238 + 76?", new ChatOptions { MaxNewTokens = 400 });
                int texts = 0, steps = 0;
                while (texts < 3 && steps < 500)
                {
                    StepReport rep = m.Step(2000);
                    steps++;
                    Event e;
                    while ((e = r.Poll()) != null)
                    {
                        T.True(!e.IsDone, "not done before the cancel: " + e);
                        if (e.Type == EventType.Text) texts++;
                    }
                    T.True(rep.Sequences <= 1, "one request");
                }
                T.True(texts >= 3, "text arrived while stepping");
                T.Status(Status.Busy, () => s.Chat("What is 1 + 1?"), "a chat while the request runs");
                r.Cancel();
                Event done = null;
                for (int i = 0; i < 10 && done == null; i++)
                {
                    m.Step(0);
                    Event e;
                    while ((e = r.Poll()) != null)
                        if (e.IsDone) done = e;
                }
                T.True(done != null, "Done after the cancel");
                T.Equal(StopReason.Cancelled, done.StopReason, "stop reason");
                T.Equal(Status.Ok, done.Status, "status");
                T.Equal(StopReason.Cancelled, r.Result.StopReason, "result");
                T.True(r.Result.GeneratedTokens < 60, "stopped early: " + r.Result.GeneratedTokens);
                r.Dispose();
                StepReport idle = m.Step(0);
                T.Equal(0, idle.Pending, "nothing pending");
                // The session is free again: a blocking chat drives the model itself.
                T.Equal(StopReason.Eos, s.Chat("What is 6238 + 76?").StopReason, "chat after the cancel");
            }
        }

        private static void CancelFromCallback()
        {
            using (var s = new Session(model))
            {
                int pieces = 0;
                ChatReply r = s.Chat(new[] { ChatMessage.User("What is 6238 + 76?") }, new ChatOptions(), (ch, text) =>
                {
                    if (++pieces == 2) s.Cancel();
                });
                T.Equal(StopReason.Cancelled, r.StopReason, "stop reason");
                T.True(r.GeneratedTokens < 20, "stopped early: " + r.GeneratedTokens);
                T.Equal("", r.Answer, "no answer yet");
            }
        }

        private static void CancelOnWorker()
        {
            using (var s = new Session(model))
            {
                // A long generation (EOS ignored) on the library's worker, cancelled once it streams.
                using (Request r = s.SubmitGenerate(problems != null ? problems[0].PromptIds : model.Tokenize("hi"),
                                                    new GenerateOptions { MaxNewTokens = 3000, StopAtEos = false }))
                {
                    int tokens = 0;
                    while (tokens < 5)
                    {
                        Event e = r.Poll();
                        if (e == null) { r.Wait(-1); continue; }
                        T.True(!e.IsDone, "not done yet");
                        if (e.Type == EventType.Token) tokens++;
                    }
                    r.Cancel();
                    Event done = null;
                    while (done == null)
                    {
                        Event e = r.Poll();
                        if (e == null) { r.Wait(-1); continue; }
                        if (e.IsDone) done = e;
                    }
                    T.Equal(StopReason.Cancelled, done.StopReason, "stop reason");
                    T.True(r.Result.GeneratedTokens < 3000, "stopped early");
                }
                T.Equal(StopReason.Eos, s.Chat("What is 6238 + 76?").StopReason, "the session works after");
            }
        }

        /// <summary>Waits until no request holds the session (Position is Busy while one does).</summary>
        private static void WaitFree(Session s)
        {
            var sw = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    int unused = s.Position;
                    return;
                }
                catch (SibylException e)
                {
                    if (e.Status != Status.Busy || sw.ElapsedMilliseconds > 10000) throw;
                    Thread.Sleep(1);
                }
            }
        }

        // ------------------------------------------------------------------ errors

        private static void BadPath()
        {
            SibylException e = T.Status(Status.Io, () => new Model("/nonexistent/sibyl-model"), "missing model");
            T.True(e.Message.Contains("/nonexistent/sibyl-model"), "the message names the path: " + e.Message);
            T.Equal(e.Message, e.LibraryMessage, "LibraryMessage");
            T.Status(Status.Io, () => new Model("/nonexistent/sibyl-model", new ModelOptions { WorkerThreads = 0 }), "with options");
        }

        private static void DisposedObjects()
        {
            var s = new Session(model);
            s.Dispose();
            s.Dispose();  // twice is fine
            T.True(s.IsDisposed, "IsDisposed");
            T.Throws<ObjectDisposedException>(() => s.Chat("What is 1 + 1?"), "Chat on a disposed session");
            T.Throws<ObjectDisposedException>(() => s.SubmitChat("What is 1 + 1?"), "SubmitChat on a disposed session");
            T.Throws<ObjectDisposedException>(() => { int unused = s.Position; }, "Position on a disposed session");
            T.Throws<ObjectDisposedException>(() => s.SaveState(), "SaveState on a disposed session");
            T.Throws<ObjectDisposedException>(() => s.Cancel(), "Cancel on a disposed session");

            var s2 = new Session(model);
            Request r = s2.SubmitChat("What is 1 + 1?");
            r.Dispose();
            T.Throws<ObjectDisposedException>(() => r.Poll(), "Poll on a disposed request");
            T.Throws<ObjectDisposedException>(() => { RequestResult unused = r.Result; }, "Result of a disposed request");
            T.Throws<ObjectDisposedException>(() => r.Cancel(), "Cancel of a disposed request");
            WaitFree(s2);  // a running request disposed is cancelled: its session is free from the next step
            // Disposing the session while a request runs: the request ends, its handle stays usable.
            Request r2 = s2.SubmitGenerate(model.Tokenize("hi"), new GenerateOptions { MaxNewTokens = 3000, StopAtEos = false });
            s2.Dispose();
            Event done = null;
            var sw = Stopwatch.StartNew();
            while (done == null && sw.ElapsedMilliseconds < 10000)
            {
                Event e = r2.Poll();
                if (e == null) { r2.Wait(10000); continue; }
                if (e.IsDone) done = e;
            }
            T.True(done != null, "the request of a disposed session ends");
            r2.Dispose();

            var m = new Model();
            var s3 = new Session(m);
            m.Dispose();
            T.Throws<ObjectDisposedException>(() => new Session(m), "a session on a disposed model");
            T.Throws<ObjectDisposedException>(() => m.Tokenize("x"), "Tokenize on a disposed model");
            T.Status(Status.ModelDestroyed, () => s3.Chat("What is 1 + 1?"), "a session whose model was disposed");
            s3.Dispose();

            var g = Grammar.FromGbnf("root ::= \"yes\"");
            g.Dispose();
            T.Throws<ObjectDisposedException>(() => new Session(model).Chat("x", new ChatOptions { Grammar = g }), "a disposed grammar");
        }

        private static void LibraryErrors()
        {
            T.Status(Status.InvalidArgument, () => Grammar.FromGbnf("root ::= ("), "bad GBNF");
            SibylException e = T.Status(Status.InvalidArgument, () => Grammar.FromJsonSchema("{\"type\": \"string\", \"pattern\": \"a+\"}"), "unsupported schema keyword");
            T.True(e.Message.Contains("pattern"), "names the keyword: " + e.Message);
            using (var s = new Session(model))
            {
                T.Status(Status.InvalidArgument, () => s.Chat(new ChatMessage[0]), "empty conversation");
                T.Status(Status.InvalidToken, () => s.Append(new[] { 1 << 20 }), "token outside the vocabulary");
                T.Status(Status.Format, () => s.LoadState(new byte[] { 1, 2, 3, 4 }), "a corrupt state");
                T.Status(Status.NoLogits, () => s.Sample(), "sample without logits");
                T.Status(Status.InvalidArgument, () => s.Rewind(5), "rewind past the end");
                // Busy: a request runs on the session.
                using (Request r = s.SubmitGenerate(model.Tokenize("hi"), new GenerateOptions { MaxNewTokens = 3000, StopAtEos = false }))
                {
                    T.Status(Status.Busy, () => s.Generate(model.Tokenize("hi")), "generate while a request runs");
                    T.Status(Status.Busy, () => s.SubmitChat("What is 1 + 1?"), "submit while a request runs");
                }
                WaitFree(s);
                T.Equal(StopReason.Eos, s.Chat("What is 6238 + 76?").StopReason, "free after the request is disposed");
            }
            T.Equal("invalid argument", Library.StatusString(Status.InvalidArgument), "status string");
        }

        // ------------------------------------------------------------------ callbacks and the GC

        private sealed class Counter
        {
            public int Calls;
            public volatile bool Stopped;
            public int CallsAfterStop;
        }

        /// <summary>Submits a long generation with a callback on another thread, which then ends: nothing keeps the Request.</summary>
        private static WeakReference SubmitAndDrop(Session session, Counter counter)
        {
            WeakReference weak = null;
            var t = new Thread(() =>
            {
                Request r = session.SubmitGenerate(model.Tokenize("hi"), new GenerateOptions { MaxNewTokens = 100000, StopAtEos = false },
                                                   e =>
                                                   {
                                                       Interlocked.Increment(ref counter.Calls);
                                                       if (counter.Stopped) Interlocked.Increment(ref counter.CallsAfterStop);
                                                       var garbage = new byte[256];  // allocate on the worker: GC pressure
                                                       garbage[0] = 1;
                                                   });
                weak = new WeakReference(r);
                var sw = Stopwatch.StartNew();
                while (Volatile.Read(ref counter.Calls) < 10 && sw.ElapsedMilliseconds < 10000) Thread.Sleep(1);
            });
            t.Start();
            t.Join();
            return weak;
        }

        /// <summary>
        /// A full collection and its finalizers, started from a fresh thread: Mono scans stacks
        /// conservatively, and the calling thread's own frames may still hold a stale pointer to
        /// the object a test just dropped (then it is never collected from that thread).
        /// </summary>
        private static void FullCollect()
        {
            var t = new Thread(() =>
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                GC.Collect();
            });
            t.Start();
            t.Join();
        }

        private static void DroppedCallbackNeverCalled()
        {
            var counter = new Counter();
            using (var s = new Session(model))
            {
                WeakReference weak = SubmitAndDrop(s, counter);
                T.True(Volatile.Read(ref counter.Calls) >= 10, "the callback ran before the drop: " + counter.Calls);
                for (int i = 0; i < 20 && weak.IsAlive; i++) FullCollect();
                T.True(!weak.IsAlive, "the dropped Request was collected");
                // Its finalizer destroyed the request: from now on the callback must never run.
                counter.Stopped = true;
                int at = Volatile.Read(ref counter.Calls);
                for (int i = 0; i < 5; i++)
                {
                    FullCollect();
                    Thread.Sleep(20);
                }
                // The session is free (the request was destroyed, so cancelled) and the model keeps working.
                WaitFree(s);
                for (int i = 0; i < 3; i++)
                    T.Equal(StopReason.Eos, s.Chat("What is 6238 + 76?").StopReason, "chat after the drop");
                T.Equal(at, Volatile.Read(ref counter.Calls), "calls after the finalizer");
                T.Equal(0, counter.CallsAfterStop, "calls after the finalizer");
            }
            // The same with the session dropped too (both finalized, in any order).
            var counter2 = new Counter();
            WeakReference weak2 = SubmitAndDropWithSession(counter2);
            for (int i = 0; i < 20 && weak2.IsAlive; i++) FullCollect();
            T.True(!weak2.IsAlive, "collected");
            counter2.Stopped = true;
            Thread.Sleep(50);
            using (var s = new Session(model)) s.Chat("What is 6238 + 76?");
            T.Equal(0, counter2.CallsAfterStop, "calls after both were finalized");
        }

        private static WeakReference SubmitAndDropWithSession(Counter counter)
        {
            WeakReference weak = null;
            var t = new Thread(() =>
            {
                var session = new Session(model);
                Request r = session.SubmitGenerate(model.Tokenize("hi"), new GenerateOptions { MaxNewTokens = 100000, StopAtEos = false },
                                                   e =>
                                                   {
                                                       Interlocked.Increment(ref counter.Calls);
                                                       if (counter.Stopped) Interlocked.Increment(ref counter.CallsAfterStop);
                                                   });
                weak = new WeakReference(r);
                var sw = Stopwatch.StartNew();
                while (Volatile.Read(ref counter.Calls) < 10 && sw.ElapsedMilliseconds < 10000) Thread.Sleep(1);
            });
            t.Start();
            t.Join();
            return weak;
        }

        private static void CallbackExceptions()
        {
            using (var s = new Session(model))
            {
                SibylCallbackException e = T.Throws<SibylCallbackException>(
                    () => s.Chat(new[] { ChatMessage.User("What is 6238 + 76?") }, null, (ch, text) => { throw new InvalidOperationException("boom"); }),
                    "onText throws");
                T.True(e.InnerException is InvalidOperationException, "inner exception");
                T.Throws<SibylCallbackException>(() => s.Generate(model.Tokenize("hi"), null, t => { throw new InvalidOperationException("boom"); }), "onToken throws");
                var done = new ManualResetEvent(false);
                using (Request r = s.SubmitChat("What is 6238 + 76?", null, ev =>
                {
                    if (ev.IsDone) done.Set();
                    throw new InvalidOperationException("boom");
                }))
                {
                    T.True(done.WaitOne(30000), "the request still finishes");
                    T.True(r.CallbackException is InvalidOperationException, "recorded: " + r.CallbackException);
                }
                T.Equal(StopReason.Eos, s.Chat("What is 6238 + 76?").StopReason, "the session works after");
            }
        }

        // ------------------------------------------------------------------ grammars, sampling, logging

        private static void Grammars()
        {
            const string schema = "{\"type\": \"object\", \"properties\": {\"answer\": {\"type\": \"integer\"}}, \"required\": [\"answer\"]}";
            string gbnf = Grammar.JsonSchemaToGbnf(schema);
            T.True(gbnf.Contains("root"), "GBNF of the schema: " + gbnf);
            using (Grammar json = Grammar.FromJsonSchema(schema))
            using (var s = new Session(model))
            {
                json.Prepare(model);
                ChatReply r = s.Chat(new[] { ChatMessage.User("What is 6238 + 76?") },
                                     new ChatOptions { Grammar = json, MaxNewTokens = 200 });
                string a = r.Answer.Trim();
                T.True(a.StartsWith("{") && a.Contains("\"answer\""), "the answer follows the schema: " + r.Answer);
                T.True(r.Reasoning.Length > 0, "the reasoning stays free");
                T.Equal(StopReason.Eos, r.StopReason, "ends where the grammar accepts");
            }
            using (Grammar yesNo = Grammar.FromGbnf("root ::= \"yes\" | \"no\""))
            using (var s = new Session(model))
            {
                ChatReply r = s.Chat(new[] { ChatMessage.User("Is 7 bigger than 3?") },
                                     new ChatOptions { Grammar = yesNo, GrammarScope = GrammarScope.Answer, MaxNewTokens = 200 });
                T.True(r.Answer.Trim() == "yes" || r.Answer.Trim() == "no", "yes or no: " + r.Answer);
                // Submitted, with the grammar disposed right after submit: the request keeps what it needs.
                Grammar g = Grammar.FromGbnf("root ::= \"maybe\"");
                Request req = s.SubmitChat("Is 7 bigger than 3?", new ChatOptions { Grammar = g, MaxNewTokens = 200 });
                g.Dispose();
                var answer = new StringBuilder();
                foreach (Event e in Drain(req)) if (e.Type == EventType.Text && e.Channel == Channel.Answer) answer.Append(e.Text);
                T.Equal("maybe", answer.ToString().Trim(), "constrained by a grammar disposed after submit");
            }
        }

        private static IEnumerable<Event> Drain(Request r)
        {
            using (r)
            {
                while (true)
                {
                    Event e = r.Poll();
                    if (e == null) { r.Wait(-1); continue; }
                    yield return e;
                    if (e.IsDone) yield break;
                }
            }
        }

        private static void Sampling()
        {
            var sampler = new SamplerOptions { Temperature = 1.2f, TopK = 40, TopP = 0.95f };
            string[] answers = new string[3];
            for (int i = 0; i < 3; i++)
                using (var s = new Session(model))
                    answers[i] = s.Chat(new[] { ChatMessage.User("What is 6238 + 76?") },
                                        new ChatOptions { Sampler = sampler, Seed = (ulong)(i < 2 ? 7 : 8), MaxNewTokens = 120 }).Reasoning;
            T.Equal(answers[0], answers[1], "same seed, same reply");
            using (var s = new Session(model))
            {
                int[] prompt = problems != null ? problems[0].PromptIds : model.Tokenize("hi");
                s.Append(prompt);
                int rows, vocab;
                float[] logits = s.Logits(out rows, out vocab);
                T.Equal(1, rows, "rows");
                T.Equal(model.Info.VocabSize, vocab, "vocab");
                int argmax = 0;
                for (int i = 1; i < vocab; i++) if (logits[i] > logits[argmax]) argmax = i;
                T.Equal(argmax, s.Sample(), "greedy sample is the argmax");
                if (problems != null) T.Equal(problems[0].OutputIds[0], argmax, "the eval's first token");
                int banned = s.Sample(new SamplerOptions { LogitBias = new Dictionary<int, float> { { argmax, float.NegativeInfinity } } });
                T.True(banned != argmax, "a -inf bias bans the token");
                s.Rewind(0);
                T.Equal(0, s.Position, "rewind");
                s.Append(prompt, LogitsMode.All);
                s.Logits(out rows, out vocab);
                T.Equal(prompt.Length, rows, "all rows kept");
                s.Reset();
                T.Equal(0, s.Position, "reset");
            }
        }

        private static void Logging()
        {
            var messages = new List<string>();
            Library.SetLogCallback((level, text) => { lock (messages) messages.Add(level + ": " + text); }, LogLevel.Debug);
            try
            {
                using (var m = new Model())
                using (var s = new Session(m))
                    s.Chat("What is 1 + 2?");
                T.Throws<SibylException>(() => new Model("/nonexistent/x"), "a failing load");
            }
            finally
            {
                Library.SetLogCallback(null, LogLevel.Warn);
            }
            lock (messages) T.True(messages.Count > 0, "log messages arrived");
        }

        // ------------------------------------------------------------------ tools

        private static void ToolsUnsupportedOnReasoner()
        {
            using (var s = new Session(model))
            {
                var opts = new ChatOptions();
                opts.Tools.Add(new Tool("wave", "Wave at the player.", null));
                T.Status(Status.Unsupported, () => s.Chat(new[] { ChatMessage.User("Hello") }, opts), "tools on a template without calls");
            }
        }

        private static void ToolCalls(string path)
        {
            const string weather = "{\"type\": \"object\", \"properties\": {\"city\": {\"enum\": [\"Lisbon\", \"Porto\"]}, " +
                                   "\"days\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 7}}, \"required\": [\"city\"]}";
            using (var m = new Model(path))
            using (var s = new Session(m))
            {
                var opts = new ChatOptions { ToolChoice = ToolChoice.Required, ToolName = "get_weather", MaxNewTokens = 80 };
                opts.Tools.Add(new Tool("get_weather", "Weather for a city.", weather));
                opts.Tools.Add(new Tool("wave", "Wave at the player.", null));
                var conv = new List<ChatMessage> { ChatMessage.User("What is the weather in Lisbon?") };
                string rendered = m.RenderChat(conv, true, opts);
                T.True(rendered.Contains("get_weather"), "the definitions join the prompt");
                ChatReply r = s.Chat(conv, opts);
                T.Equal(1, r.ToolCalls.Count, "one forced call");
                T.Equal("get_weather", r.ToolCalls[0].Name, "tool name");
                var args = MiniJson.Parse(r.ToolCalls[0].Arguments) as Dictionary<string, object>;
                T.True(args != null && args.ContainsKey("city"), "schema-valid arguments: " + r.ToolCalls[0].Arguments);
                T.True((string)args["city"] == "Lisbon" || (string)args["city"] == "Porto", "city enum");

                // Continue: the assistant turn with its call, the tool's output, then the reply.
                conv.Add(ChatMessage.Assistant(r.Answer, r.ToolCalls));
                conv.Add(ChatMessage.ToolResult("{\"temperature\": 21}"));
                var after = new ChatOptions { MaxNewTokens = 20, ToolChoice = ToolChoice.None };
                after.Tools = opts.Tools;
                ChatReply r2 = s.Chat(conv, after);
                T.True(r2.ReusedTokens > 0, "the continued chat reuses the cached call: " + r2.ReusedTokens);
                T.Equal(0, r2.ToolCalls.Count, "no calls with ToolChoice.None");

                // Submitted: a ToolCall event.
                using (var s2 = new Session(m))
                {
                    var calls = new List<Event>();
                    foreach (Event e in s2.ChatStream(new[] { ChatMessage.User("Wave!") },
                                                      new ChatOptions { Tools = opts.Tools, ToolChoice = ToolChoice.Required, ToolName = "wave", MaxNewTokens = 40 }))
                        if (e.Type == EventType.ToolCall) calls.Add(e);
                    T.Equal(1, calls.Count, "one ToolCall event");
                    T.Equal("wave", calls[0].Name, "event tool name");
                    T.True(calls[0].Text.StartsWith("{"), "arguments JSON: " + calls[0].Text);
                }
            }
        }
    }
}
