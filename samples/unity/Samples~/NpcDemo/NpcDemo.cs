// NpcDemo.cs — the demo scene's one script: put it on an empty GameObject in a new scene and
// press Play. It creates three NPCs (GameObjects with SibylNpc) that share one model, asks each a
// question, and draws their streaming reasoning and answers with OnGUI (no assets needed).
// Keys: 1-3 ask NPC n a new question, C cancels them all, D toggles NPC 1 (disabling cancels).
using System.Collections.Generic;
using Sibyl.Unity;
using UnityEngine;

public class NpcDemo : MonoBehaviour
{
    private static readonly string[] Questions =
    {
        "What is 347 + 589?", "What is 905 - 277?", "What is 23 * 7?", "How many r are in strawberry?",
        "Which is bigger, 4512 or 4521?", "Mira sells a sword for 12 gold and a shield for 25 gold. How much for 2 sword and 1 shield?",
    };

    private readonly List<SibylNpc> npcs = new List<SibylNpc>();
    private int next;

    private void Start()
    {
        for (int i = 0; i < 3; i++)
        {
            var go = new GameObject("NPC " + (i + 1));
            go.transform.position = new Vector3(i * 2f - 2f, 0f, 0f);
            SibylNpc npc = go.AddComponent<SibylNpc>();  // Awake runs here: it acquires the shared model
            npcs.Add(npc);
            npc.Ask(Questions[next++ % Questions.Length]);
        }
    }

    private void Update()
    {
        for (int i = 0; i < npcs.Count && i < 9; i++)
            if (Input.GetKeyDown(KeyCode.Alpha1 + i)) npcs[i].Ask(Questions[next++ % Questions.Length]);
        if (Input.GetKeyDown(KeyCode.C))
            foreach (SibylNpc npc in npcs) npc.CancelThinking();
        if (Input.GetKeyDown(KeyCode.D) && npcs.Count > 0) npcs[0].enabled = !npcs[0].enabled;
    }

    private void OnGUI()
    {
        float width = Screen.width / Mathf.Max(1, npcs.Count);
        for (int i = 0; i < npcs.Count; i++)
        {
            SibylNpc npc = npcs[i];
            GUILayout.BeginArea(new Rect(i * width + 8, 8, width - 16, Screen.height - 16));
            GUILayout.Label("<b>" + npc.name + (npc.enabled ? "" : " (disabled)") + "</b>");
            GUILayout.Label("Q: " + (npc.CurrentQuestion ?? (npc.LastExchange != null ? npc.LastExchange.Question : "")));
            GUILayout.Label("<i>" + npc.Reasoning + "</i>");
            GUILayout.Label("A: " + npc.Answer + (npc.IsThinking ? " …" : ""));
            GUILayout.EndArea();
        }
    }
}
