// sibyl_struct_size / sibyl_struct_offset: the layout of every public struct, as this
// library was compiled, so FFI bindings (Python ctypes, C#, LuaJIT) can check their mirrors
// at load time instead of corrupting memory. Each entry comes from sizeof/offsetof, so the
// table cannot disagree with the header; tests/test_capi_layout.cpp checks it lists every
// struct the header declares.
#include "sibyl/sibyl.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace {

struct Field {
  const char* name;
  size_t offset;
};
struct Layout {
  const char* name;
  size_t size;
  const Field* fields;
  size_t n_fields;
};

#define SIBYL_F(type, field) Field{#field, offsetof(type, field)}
#define SIBYL_LAYOUT(type, ...)                                  \
  constexpr Field type##_fields[] = {__VA_ARGS__};               \
  constexpr Layout type##_layout{#type, sizeof(type), type##_fields, \
                                 sizeof(type##_fields) / sizeof(Field)};

SIBYL_LAYOUT(sibyl_vulkan_device, SIBYL_F(sibyl_vulkan_device, struct_size), SIBYL_F(sibyl_vulkan_device, instance),
             SIBYL_F(sibyl_vulkan_device, physical_device), SIBYL_F(sibyl_vulkan_device, device),
             SIBYL_F(sibyl_vulkan_device, queue), SIBYL_F(sibyl_vulkan_device, queue_family_index),
             SIBYL_F(sibyl_vulkan_device, get_instance_proc_addr), SIBYL_F(sibyl_vulkan_device, lock_queue),
             SIBYL_F(sibyl_vulkan_device, unlock_queue), SIBYL_F(sibyl_vulkan_device, queue_user_data))
SIBYL_LAYOUT(sibyl_model_options, SIBYL_F(sibyl_model_options, struct_size), SIBYL_F(sibyl_model_options, backend),
             SIBYL_F(sibyl_model_options, n_threads), SIBYL_F(sibyl_model_options, device_index),
             SIBYL_F(sibyl_model_options, memory_budget), SIBYL_F(sibyl_model_options, vulkan_device),
             SIBYL_F(sibyl_model_options, kv_cache_bytes), SIBYL_F(sibyl_model_options, kv_page_tokens),
             SIBYL_F(sibyl_model_options, worker_threads), SIBYL_F(sibyl_model_options, worker_nice),
             SIBYL_F(sibyl_model_options, worker_cpu_mask), SIBYL_F(sibyl_model_options, step_tokens),
             SIBYL_F(sibyl_model_options, precision), SIBYL_F(sibyl_model_options, mtp),
             SIBYL_F(sibyl_model_options, mtp_max_batch))
SIBYL_LAYOUT(sibyl_model_info, SIBYL_F(sibyl_model_info, struct_size), SIBYL_F(sibyl_model_info, architecture),
             SIBYL_F(sibyl_model_info, backend), SIBYL_F(sibyl_model_info, vocab_size),
             SIBYL_F(sibyl_model_info, hidden_size), SIBYL_F(sibyl_model_info, n_layers),
             SIBYL_F(sibyl_model_info, n_dense_layers), SIBYL_F(sibyl_model_info, n_heads),
             SIBYL_F(sibyl_model_info, q_lora_rank), SIBYL_F(sibyl_model_info, kv_lora_rank),
             SIBYL_F(sibyl_model_info, qk_rope_head_dim), SIBYL_F(sibyl_model_info, n_routed_experts),
             SIBYL_F(sibyl_model_info, n_shared_experts), SIBYL_F(sibyl_model_info, n_experts_per_token),
             SIBYL_F(sibyl_model_info, max_position_embeddings), SIBYL_F(sibyl_model_info, bos_token_id),
             SIBYL_F(sibyl_model_info, eos_token_id), SIBYL_F(sibyl_model_info, n_parameters),
             SIBYL_F(sibyl_model_info, kv_bytes_per_token), SIBYL_F(sibyl_model_info, kv_cache_bytes),
             SIBYL_F(sibyl_model_info, kv_page_tokens), SIBYL_F(sibyl_model_info, worker_threads),
             SIBYL_F(sibyl_model_info, kv_cache_bytes_used), SIBYL_F(sibyl_model_info, precision),
             SIBYL_F(sibyl_model_info, cpu_simd), SIBYL_F(sibyl_model_info, decode_weight_bytes),
             SIBYL_F(sibyl_model_info, mtp_layers), SIBYL_F(sibyl_model_info, mtp))
SIBYL_LAYOUT(sibyl_session_options, SIBYL_F(sibyl_session_options, struct_size),
             SIBYL_F(sibyl_session_options, max_context), SIBYL_F(sibyl_session_options, seed))
SIBYL_LAYOUT(sibyl_logit_bias, SIBYL_F(sibyl_logit_bias, token), SIBYL_F(sibyl_logit_bias, bias))
SIBYL_LAYOUT(sibyl_sampler_options, SIBYL_F(sibyl_sampler_options, struct_size),
             SIBYL_F(sibyl_sampler_options, temperature), SIBYL_F(sibyl_sampler_options, top_k),
             SIBYL_F(sibyl_sampler_options, top_p), SIBYL_F(sibyl_sampler_options, min_p),
             SIBYL_F(sibyl_sampler_options, repetition_penalty), SIBYL_F(sibyl_sampler_options, repetition_last_n),
             SIBYL_F(sibyl_sampler_options, logit_bias), SIBYL_F(sibyl_sampler_options, n_logit_bias))
SIBYL_LAYOUT(sibyl_generate_options, SIBYL_F(sibyl_generate_options, struct_size),
             SIBYL_F(sibyl_generate_options, max_new_tokens), SIBYL_F(sibyl_generate_options, stop_at_eos),
             SIBYL_F(sibyl_generate_options, reseed), SIBYL_F(sibyl_generate_options, seed),
             SIBYL_F(sibyl_generate_options, sampler), SIBYL_F(sibyl_generate_options, grammar))
SIBYL_LAYOUT(sibyl_chat_message, SIBYL_F(sibyl_chat_message, role), SIBYL_F(sibyl_chat_message, content),
             SIBYL_F(sibyl_chat_message, content_len))
SIBYL_LAYOUT(sibyl_tool, SIBYL_F(sibyl_tool, name), SIBYL_F(sibyl_tool, description),
             SIBYL_F(sibyl_tool, parameters))
SIBYL_LAYOUT(sibyl_tool_call, SIBYL_F(sibyl_tool_call, message), SIBYL_F(sibyl_tool_call, name),
             SIBYL_F(sibyl_tool_call, arguments))
SIBYL_LAYOUT(sibyl_chat_options, SIBYL_F(sibyl_chat_options, struct_size),
             SIBYL_F(sibyl_chat_options, max_new_tokens), SIBYL_F(sibyl_chat_options, think_budget),
             SIBYL_F(sibyl_chat_options, thinking), SIBYL_F(sibyl_chat_options, stop_strings),
             SIBYL_F(sibyl_chat_options, n_stop_strings), SIBYL_F(sibyl_chat_options, sampler),
             SIBYL_F(sibyl_chat_options, reseed), SIBYL_F(sibyl_chat_options, seed),
             SIBYL_F(sibyl_chat_options, trusted), SIBYL_F(sibyl_chat_options, grammar),
             SIBYL_F(sibyl_chat_options, grammar_scope), SIBYL_F(sibyl_chat_options, tools),
             SIBYL_F(sibyl_chat_options, n_tools), SIBYL_F(sibyl_chat_options, tool_choice),
             SIBYL_F(sibyl_chat_options, tool_name), SIBYL_F(sibyl_chat_options, tool_calls),
             SIBYL_F(sibyl_chat_options, n_tool_calls), SIBYL_F(sibyl_chat_options, on_tool_call))
SIBYL_LAYOUT(sibyl_chat_result, SIBYL_F(sibyl_chat_result, struct_size), SIBYL_F(sibyl_chat_result, stop_reason),
             SIBYL_F(sibyl_chat_result, prompt_tokens), SIBYL_F(sibyl_chat_result, reused_tokens),
             SIBYL_F(sibyl_chat_result, reasoning_tokens), SIBYL_F(sibyl_chat_result, answer_tokens),
             SIBYL_F(sibyl_chat_result, generated_tokens), SIBYL_F(sibyl_chat_result, reserved),
             SIBYL_F(sibyl_chat_result, first_token_us), SIBYL_F(sibyl_chat_result, total_us),
             SIBYL_F(sibyl_chat_result, drafted_tokens), SIBYL_F(sibyl_chat_result, accepted_drafts),
             SIBYL_F(sibyl_chat_result, tool_calls), SIBYL_F(sibyl_chat_result, reserved2))
SIBYL_LAYOUT(sibyl_event, SIBYL_F(sibyl_event, struct_size), SIBYL_F(sibyl_event, type),
             SIBYL_F(sibyl_event, token), SIBYL_F(sibyl_event, channel), SIBYL_F(sibyl_event, text),
             SIBYL_F(sibyl_event, text_len), SIBYL_F(sibyl_event, stop_reason), SIBYL_F(sibyl_event, status),
             SIBYL_F(sibyl_event, name), SIBYL_F(sibyl_event, name_len))
SIBYL_LAYOUT(sibyl_request_options, SIBYL_F(sibyl_request_options, struct_size),
             SIBYL_F(sibyl_request_options, on_event), SIBYL_F(sibyl_request_options, user_data))
SIBYL_LAYOUT(sibyl_step_report, SIBYL_F(sibyl_step_report, struct_size), SIBYL_F(sibyl_step_report, rows),
             SIBYL_F(sibyl_step_report, sequences), SIBYL_F(sibyl_step_report, pending),
             SIBYL_F(sibyl_step_report, elapsed_us), SIBYL_F(sibyl_step_report, overrun))

constexpr const Layout* kLayouts[] = {
    &sibyl_vulkan_device_layout, &sibyl_model_options_layout,    &sibyl_model_info_layout,
    &sibyl_session_options_layout, &sibyl_logit_bias_layout,     &sibyl_sampler_options_layout,
    &sibyl_generate_options_layout, &sibyl_chat_message_layout,  &sibyl_tool_layout,
    &sibyl_tool_call_layout,       &sibyl_chat_options_layout,   &sibyl_chat_result_layout,
    &sibyl_event_layout,           &sibyl_request_options_layout, &sibyl_step_report_layout,
};

const Layout* find_layout(const char* name) {
  if (!name) return nullptr;
  for (const Layout* layout : kLayouts)
    if (std::strcmp(layout->name, name) == 0) return layout;
  return nullptr;
}

}  // namespace

extern "C" {

size_t sibyl_struct_size(const char* name) {
  const Layout* layout = find_layout(name);
  return layout ? layout->size : 0;
}

size_t sibyl_struct_offset(const char* name, const char* field) {
  const Layout* layout = find_layout(name);
  if (!layout || !field) return SIZE_MAX;
  for (size_t i = 0; i < layout->n_fields; ++i)
    if (std::strcmp(layout->fields[i].name, field) == 0) return layout->fields[i].offset;
  return SIZE_MAX;
}

const char* sibyl_struct_name(size_t index) {
  return index < sizeof kLayouts / sizeof kLayouts[0] ? kLayouts[index]->name : nullptr;
}

const char* sibyl_struct_field(const char* name, size_t index) {
  const Layout* layout = find_layout(name);
  return layout && index < layout->n_fields ? layout->fields[index].name : nullptr;
}

}  // extern "C"
