// NpcBrain.cs — the thinking NPC without the engine: a question queue, one submitted request
// at a time, polled once per frame (Tick), the reasoning and answer accumulated as they stream,
// cancellation. SibylNpc (the MonoBehaviour) is a thin shell around it; this file needs only the
// C# binding, so CI compiles and drives it with Mono (samples/unity/tests/NpcBrainTest.cs).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Text;

namespace Sibyl.Unity
{
    /// <summary>One question and what the NPC made of it.</summary>
    public sealed class NpcExchange
    {
        public string Question { get; internal set; }
        public string Reasoning { get; internal set; }
        public string Answer { get; internal set; }
        public StopReason StopReason { get; internal set; }
        /// <summary>Status.Ok, or the error the request ended with (then Error says why).</summary>
        public Status Status { get; internal set; }
        public string Error { get; internal set; }
        /// <summary>Ticks (frames) from the question's submission to its end.</summary>
        public int Frames { get; internal set; }
        /// <summary>Seconds from the question's submission to its end, as the game loop saw it.</summary>
        public double Seconds { get; internal set; }
        public int GeneratedTokens { get; internal set; }

        public bool Cancelled { get { return StopReason == StopReason.Cancelled; } }
    }

    /// <summary>
    /// A thinking NPC: ask it questions (queued), call Tick once per frame. Tick never blocks: it
    /// drains the events the library queued for the current request (up to MaxEventsPerTick),
    /// submits the next question when the previous one is done, and raises the events below on
    /// the calling (main) thread. One Session per brain; many brains share one Model.
    /// </summary>
    public sealed class NpcBrain : IDisposable
    {
        private readonly Session session;
        private readonly Queue<string> questions = new Queue<string>();
        private readonly StringBuilder reasoning = new StringBuilder();
        private readonly StringBuilder answer = new StringBuilder();
        private readonly Stopwatch clock = new Stopwatch();
        private Request request;
        private string question;
        private int frames;
        private bool cancelling;
        private bool disposed;

        public NpcBrain(Model model, ChatOptions options = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            session = new Session(model);
            Options = options ?? new ChatOptions { MaxNewTokens = 256 };
            MaxEventsPerTick = 256;
        }

        /// <summary>How each question is answered (read when it is submitted).</summary>
        public ChatOptions Options { get; set; }
        /// <summary>Put before each question as a system message (null or empty: none).</summary>
        public string SystemPrompt { get; set; }
        /// <summary>Events handled per Tick at most (the rest wait for the next frame).</summary>
        public int MaxEventsPerTick { get; set; }

        /// <summary>A piece of reasoning or answer text arrived (main thread, inside Tick).</summary>
        public event Action<Channel, string> TextReceived;
        /// <summary>A question ended (answered, cancelled or failed).</summary>
        public event Action<NpcExchange> Finished;

        public Session Session { get { return session; } }
        /// <summary>The question being answered now (null when idle).</summary>
        public string CurrentQuestion { get { return question; } }
        /// <summary>The current question's reasoning so far (the last one's once it ended).</summary>
        public string Reasoning { get { return reasoning.ToString(); } }
        /// <summary>The current question's answer so far (the last one's once it ended).</summary>
        public string Answer { get { return answer.ToString(); } }
        /// <summary>A question is being answered (or its cancellation is finishing).</summary>
        public bool IsThinking { get { return request != null; } }
        public int QueuedQuestions { get { return questions.Count; } }
        public NpcExchange LastExchange { get; private set; }
        public int Answered { get; private set; }

        /// <summary>Queue a question; it is submitted at the next Tick when the NPC is free.</summary>
        public void Ask(string text)
        {
            if (disposed) throw new ObjectDisposedException("NpcBrain");
            if (string.IsNullOrEmpty(text)) throw new ArgumentException("empty question", "text");
            questions.Enqueue(text);
        }

        /// <summary>
        /// Call once per frame. Returns the number of events handled. Never waits for the model:
        /// every call it makes returns at once (poll, submit, and destroy of a finished request).
        /// </summary>
        public int Tick()
        {
            if (disposed) return 0;
            int handled = 0;
            if (request != null)
            {
                frames++;
                Event e;
                while (handled < MaxEventsPerTick && (e = request.Poll()) != null)
                {
                    handled++;
                    if (e.Type == EventType.Text)
                    {
                        (e.Channel == Channel.Reasoning ? reasoning : answer).Append(e.Text);
                        Action<Channel, string> h = TextReceived;
                        if (h != null) h(e.Channel, e.Text);
                    }
                    else if (e.IsDone)
                    {
                        Finish(e);
                        break;
                    }
                }
            }
            if (request == null && questions.Count > 0) StartNext();
            return handled;
        }

        /// <summary>
        /// Stop thinking: the current question ends (as Cancelled, reported by a later Tick) and the
        /// queued ones are dropped. Call it when the NPC is disabled; Tick keeps working afterwards.
        /// </summary>
        public void Cancel()
        {
            questions.Clear();
            if (request != null && !cancelling)
            {
                cancelling = true;
                request.Cancel();
            }
        }

        /// <summary>Cancels what runs and frees the session. The brain cannot be used afterwards.</summary>
        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            questions.Clear();
            if (request != null) request.Dispose();  // cancels it; the callback-free request just goes
            request = null;
            session.Dispose();
        }

        private void StartNext()
        {
            string next = questions.Peek();
            var messages = new List<ChatMessage>();
            if (!string.IsNullOrEmpty(SystemPrompt)) messages.Add(ChatMessage.System(SystemPrompt));
            messages.Add(ChatMessage.User(next));
            try
            {
                request = session.SubmitChat(messages, Options);
            }
            catch (SibylException e)
            {
                if (e.Status == Status.Busy) return;  // the last request is still being released: next frame
                questions.Dequeue();
                reasoning.Length = 0;
                answer.Length = 0;
                frames = 0;
                clock.Reset();
                Report(next, StopReason.Error, e.Status, e.Message, 0);
                return;
            }
            questions.Dequeue();
            question = next;
            reasoning.Length = 0;
            answer.Length = 0;
            frames = 0;
            cancelling = false;
            clock.Reset();
            clock.Start();
        }

        private void Finish(Event done)
        {
            int generated = 0;
            try
            {
                generated = request.Result.GeneratedTokens;
            }
            catch (SibylException)
            {
            }
            request.Dispose();
            request = null;
            string q = question;
            question = null;
            cancelling = false;
            Report(q, done.StopReason, done.Status, done.Status == Status.Ok ? null : done.Text, generated);
        }

        private void Report(string q, StopReason stop, Status status, string error, int generated)
        {
            clock.Stop();
            var x = new NpcExchange
            {
                Question = q,
                Reasoning = reasoning.ToString(),
                Answer = answer.ToString(),
                StopReason = stop,
                Status = status,
                Error = error,
                Frames = frames,
                Seconds = clock.Elapsed.TotalSeconds,
                GeneratedTokens = generated,
            };
            LastExchange = x;
            if (status == Status.Ok && stop != StopReason.Cancelled) Answered++;
            Action<NpcExchange> h = Finished;
            if (h != null) h(x);
        }
    }
}
