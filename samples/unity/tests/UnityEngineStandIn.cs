// UnityEngineStandIn.cs — the few UnityEngine types SibylNpc.cs uses, so CI can compile the Unity
// component with Mono and drive its lifecycle (Awake, Start, Update, OnDisable, OnDestroy) by
// reflection. Not Unity: no scene, no player loop — Unity itself is needed for that (README.md).
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        private static int nextId = 1;
        private readonly int id = nextId++;
        public string name = "stand-in";
        public int GetInstanceID() { return id; }
    }

    public class Component : Object { }

    public class Behaviour : Component
    {
        private bool isEnabled = true;

        public bool enabled
        {
            get { return isEnabled; }
            set
            {
                if (isEnabled == value) return;
                isEnabled = value;
                MonoBehaviourHost.Call(this, value ? "OnEnable" : "OnDisable");
            }
        }
    }

    public class MonoBehaviour : Behaviour { }

    /// <summary>Calls a MonoBehaviour's private message methods, as Unity's player loop would.</summary>
    public static class MonoBehaviourHost
    {
        public static void Call(object target, string message)
        {
            var m = target.GetType().GetMethod(message, System.Reflection.BindingFlags.Instance |
                                                        System.Reflection.BindingFlags.Public |
                                                        System.Reflection.BindingFlags.NonPublic);
            if (m != null) m.Invoke(target, null);
        }
    }

    [AttributeUsage(AttributeTargets.Field)] public sealed class SerializeField : Attribute { }
    [AttributeUsage(AttributeTargets.Field)] public sealed class TooltipAttribute : Attribute { public TooltipAttribute(string t) { } }
    [AttributeUsage(AttributeTargets.Field)] public sealed class TextAreaAttribute : Attribute { }
    [AttributeUsage(AttributeTargets.Class)] public sealed class DisallowMultipleComponent : Attribute { }
    [AttributeUsage(AttributeTargets.Class)] public sealed class AddComponentMenu : Attribute { public AddComponentMenu(string m) { } }

    public static class Debug
    {
        public static readonly List<string> Messages = new List<string>();
        public static void Log(object m) { Add("log", m); }
        public static void LogWarning(object m) { Add("warning", m); }
        public static void LogError(object m) { Add("error", m); }

        private static void Add(string kind, object m)
        {
            lock (Messages) Messages.Add(kind + ": " + m);
            Console.WriteLine("  [unity " + kind + "] " + m);
        }
    }

    public static class Application
    {
        public static string streamingAssetsPath = "/nonexistent/StreamingAssets";
    }
}

namespace UnityEngine.Events
{
    public class UnityEvent<T0>
    {
        private readonly List<Action<T0>> listeners = new List<Action<T0>>();
        public void AddListener(Action<T0> a) { listeners.Add(a); }
        public void Invoke(T0 arg) { foreach (Action<T0> a in listeners) a(arg); }
    }
}
