#!/usr/bin/env python3
"""Writes render_reference.json: a conversation with tools, tool calls and tool outputs rendered by
DeepSeek-V3's own chat template (Jinja, with transformers' settings), the tool definitions written
as the system message docs/STRUCTURED_OUTPUT.md specifies. Run from this directory; needs python3-jinja2."""
import json
import jinja2

TOOLS = [
    {"name": "get_weather", "description": "Current weather in a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Lisbon", "Porto", "Faro"]},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                    "required": ["city"], "additionalProperties": False}},
    {"name": "give_item", "description": "",
     "parameters": {"type": "object", "properties": {"item": {"type": "string", "maxLength": 20}},
                    "required": ["item"]}},
]

B, E = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CB, CE, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"


def definitions(tools):
    s = "## Tools\n\nYou can call the tools below. To call tools, reply with exactly this and nothing else:\n"
    s += B + CB + "function" + SEP + "TOOL_NAME\n```json\nARGUMENTS\n```" + CE + E
    s += ("\nwhere TOOL_NAME is one of the names below and ARGUMENTS a JSON object that follows its parameters. "
          "For several calls, separate their " + CB + "…" + CE + " parts with a line break. "
          "The results come back as tool outputs.\n")
    for t in tools:
        s += "\n### " + t["name"] + "\n"
        if t["description"]:
            s += "Description: " + t["description"] + "\n"
        s += "Parameters: " + json.dumps(t["parameters"], separators=(",", ":"), ensure_ascii=False) + "\n"
    return s


def call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


MESSAGES = [
    {"role": "system", "content": "You are Mira, the innkeeper."},
    {"role": "user", "content": "Is it raining in Lisbon? And in Porto?"},
    {"role": "assistant", "content": None,
     "tool_calls": [call("get_weather", '{"city": "Lisbon"}'), call("get_weather", '{"city": "Porto", "days": 2}')]},
    {"role": "tool", "content": '{"rain": true}'},
    {"role": "tool", "content": '{"rain": false}'},
    {"role": "assistant", "content": "Lisbon yes, Porto no."},
    {"role": "user", "content": "Give me the sword."},
]


def main():
    config = json.load(open("../tokenizers/deepseek-v3/tokenizer_config.json", encoding="utf-8"))
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(config["chat_template"])
    with_definitions = MESSAGES + [{"role": "system", "content": definitions(TOOLS)}]
    text = template.render(messages=with_definitions, bos_token=config["bos_token"]["content"]
                           if isinstance(config["bos_token"], dict) else config["bos_token"],
                           add_generation_prompt=True)
    json.dump({"tools": TOOLS, "messages": MESSAGES, "rendered": text}, open("render_reference.json", "w",
              encoding="utf-8"), ensure_ascii=False, indent=1)


main()
