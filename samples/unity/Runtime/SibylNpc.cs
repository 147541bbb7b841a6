// SibylNpc.cs — gives a GameObject a thinking NPC: it asks the shared model questions through
// the non-blocking API, polls once per frame in Update(), exposes the reasoning and the answer as
// they stream, and cancels when disabled or destroyed. All the logic is in NpcBrain; this is the
// Unity shell (the only file of the package that needs UnityEngine).
using System;
using System.IO;
using UnityEngine;
using UnityEngine.Events;

namespace Sibyl.Unity
{
    [Serializable]
    public class SibylTextEvent : UnityEvent<string> { }

    [DisallowMultipleComponent]
    [AddComponentMenu("Sibyl/Sibyl NPC")]
    public class SibylNpc : MonoBehaviour
    {
        [Tooltip("Model directory, .gguf or .sibyl file. Empty: the default model (the library's tiny-reasoner, " +
                 "or $SIBYL_DEFAULT_MODEL). A relative path is read under StreamingAssets.")]
        [SerializeField] private string modelPath = "";

        [Tooltip("Asked once when the NPC starts (empty: nothing).")]
        [SerializeField] private string askOnStart = "What is 347 + 589?";

        [Tooltip("Optional system prompt put before every question.")]
        [TextArea] [SerializeField] private string systemPrompt = "";

        [Tooltip("Reasoning + answer tokens per question.")]
        [SerializeField] private int maxNewTokens = 256;

        [Tooltip("Reasoning tokens before the answer is forced; -1: unlimited.")]
        [SerializeField] private int thinkBudget = -1;

        [Tooltip("0: greedy. Above 0: sampled, with a per-NPC seed.")]
        [SerializeField] private float temperature = 0f;

        [Tooltip("Events handled per frame at most.")]
        [SerializeField] private int maxEventsPerFrame = 64;

        [SerializeField] private bool logAnswers = true;

        [Tooltip("Each new piece of the answer (the whole answer so far is in Answer).")]
        public SibylTextEvent onAnswerText = new SibylTextEvent();
        [Tooltip("The final answer of a question.")]
        public SibylTextEvent onAnswered = new SibylTextEvent();

        private ModelLease lease;
        private NpcBrain brain;

        /// <summary>The current question's reasoning so far (the last one's when idle).</summary>
        public string Reasoning { get { return brain == null ? string.Empty : brain.Reasoning; } }
        /// <summary>The current question's answer so far (the last one's when idle).</summary>
        public string Answer { get { return brain == null ? string.Empty : brain.Answer; } }
        public string CurrentQuestion { get { return brain == null ? null : brain.CurrentQuestion; } }
        public bool IsThinking { get { return brain != null && brain.IsThinking; } }
        public NpcExchange LastExchange { get { return brain == null ? null : brain.LastExchange; } }
        /// <summary>The engine-independent logic (null before Awake or after a failed load).</summary>
        public NpcBrain Brain { get { return brain; } }

        /// <summary>Queue a question (answered after the ones before it).</summary>
        public void Ask(string question)
        {
            if (brain != null) brain.Ask(question);
        }

        /// <summary>Stop thinking and drop the queued questions.</summary>
        public void CancelThinking()
        {
            if (brain != null) brain.Cancel();
        }

        private void Awake()
        {
            try
            {
                lease = SharedModel.Acquire(ResolveModelPath(modelPath));
                var options = new ChatOptions { MaxNewTokens = (uint)Math.Max(1, maxNewTokens) };
                if (thinkBudget >= 0) options.ThinkBudget = thinkBudget;
                if (temperature > 0f)
                {
                    options.Sampler = new SamplerOptions { Temperature = temperature, TopP = 0.95f };
                    options.Seed = (ulong)(uint)GetInstanceID();
                }
                brain = new NpcBrain(lease.Model, options) { SystemPrompt = systemPrompt, MaxEventsPerTick = Math.Max(1, maxEventsPerFrame) };
                brain.TextReceived += OnText;
                brain.Finished += OnFinished;
            }
            catch (Exception e)  // SibylException (a bad path...), DllNotFoundException (no plugin)
            {
                Debug.LogError("SibylNpc '" + name + "': " + e.Message);
                if (lease != null) lease.Dispose();
                lease = null;
                enabled = false;
            }
        }

        private void Start()
        {
            if (!string.IsNullOrEmpty(askOnStart)) Ask(askOnStart);
        }

        private void Update()
        {
            if (brain != null) brain.Tick();
        }

        private void OnDisable()
        {
            CancelThinking();
        }

        private void OnDestroy()
        {
            if (brain != null) brain.Dispose();
            brain = null;
            if (lease != null) lease.Dispose();  // the last NPC's destroys the model
            lease = null;
        }

        private void OnText(Channel channel, string piece)
        {
            if (channel == Channel.Answer) onAnswerText.Invoke(piece);
        }

        private void OnFinished(NpcExchange x)
        {
            if (x.Status != Status.Ok)
                Debug.LogWarning("SibylNpc '" + name + "': \"" + x.Question + "\" failed: " + x.Error);
            else if (logAnswers)
                Debug.Log("SibylNpc '" + name + "': " + x.Question + " -> " + x.Answer +
                          (x.Cancelled ? " (cancelled)" : "") + " (" + x.Frames + " frames)");
            if (x.Status == Status.Ok && !x.Cancelled) onAnswered.Invoke(x.Answer);
        }

        /// <summary>Empty: the default model; relative: under StreamingAssets; absolute: as is.</summary>
        public static string ResolveModelPath(string path)
        {
            if (string.IsNullOrEmpty(path)) return null;
            return Path.IsPathRooted(path) ? path : Path.Combine(Application.streamingAssetsPath, path);
        }
    }
}
