// SharedModel.cs — one loaded Model per path, shared by every NPC that asks for it and disposed
// when the last one lets go (engine-independent, like NpcBrain).
using System;
using System.Collections.Generic;

namespace Sibyl.Unity
{
    /// <summary>A reference to a shared model; Dispose it when the user (an NPC) goes away.</summary>
    public sealed class ModelLease : IDisposable
    {
        private readonly string key;
        private bool released;

        internal ModelLease(string key, Model model)
        {
            this.key = key;
            Model = model;
        }

        public Model Model { get; private set; }

        public void Dispose()
        {
            if (released) return;
            released = true;
            SharedModel.Release(key);
        }
    }

    /// <summary>
    /// The models NPCs share: Acquire loads a model the first time its path is asked for and
    /// counts its users; the last lease's Dispose destroys it. Thread-safe.
    /// </summary>
    public static class SharedModel
    {
        private sealed class Entry
        {
            public Model Model;
            public int Users;
        }

        private static readonly Dictionary<string, Entry> Models = new Dictionary<string, Entry>();

        /// <summary>
        /// The model at path (null or "": the default model), loaded with options the first time.
        /// Later calls for the same path share it (their options are ignored).
        /// </summary>
        public static ModelLease Acquire(string path = null, ModelOptions options = null)
        {
            string key = string.IsNullOrEmpty(path) ? string.Empty : path;
            lock (Models)
            {
                Entry e;
                if (!Models.TryGetValue(key, out e))
                {
                    e = new Entry { Model = new Model(key.Length == 0 ? null : key, options) };
                    Models.Add(key, e);
                }
                e.Users++;
                return new ModelLease(key, e.Model);
            }
        }

        /// <summary>Models loaded now.</summary>
        public static int LoadedModels
        {
            get { lock (Models) return Models.Count; }
        }

        /// <summary>Users of the model at path (0: not loaded).</summary>
        public static int Users(string path = null)
        {
            lock (Models)
            {
                Entry e;
                return Models.TryGetValue(string.IsNullOrEmpty(path) ? string.Empty : path, out e) ? e.Users : 0;
            }
        }

        internal static void Release(string key)
        {
            Model dispose = null;
            lock (Models)
            {
                Entry e;
                if (!Models.TryGetValue(key, out e)) return;
                if (--e.Users == 0)
                {
                    Models.Remove(key);
                    dispose = e.Model;
                }
            }
            if (dispose != null) dispose.Dispose();
        }
    }
}
