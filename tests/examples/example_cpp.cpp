// example_cpp.cpp: the same program with the header-only C++ SDK (C++17).
// Loads a model, prints what it is, generates 8 greedy tokens on each of two
// sessions running on two threads, and shows how an error is reported. It uses
// the non-throwing forms, so it also builds with -fno-exceptions.
//
//   c++ -std=c++17 example_cpp.cpp -lsibyl -pthread && ./a.out tests/data/tiny-v3
#include <sibyl/sibyl.hpp>

#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    if (!sibyl::abi_compatible()) {
        const std::string version(sibyl::version());
        std::fprintf(stderr, "libsibyl %s is not ABI-compatible with this program\n", version.c_str());
        return 1;
    }

    sibyl::Result<sibyl::Model> loaded = sibyl::Model::load(argv[1]);
    if (!loaded) {
        std::fprintf(stderr, "cannot load %s: %s\n", argv[1], loaded.error().message.c_str());
        return 1;
    }
    const sibyl::Model model = std::move(loaded).value();

    sibyl::Result<sibyl::ModelInfo> info = model.info();
    if (!info) {
        std::fprintf(stderr, "model info: %s\n", info.error().message.c_str());
        return 1;
    }
    std::printf("%s on %s: vocab %d, hidden %d, %d layers, %d of %d experts per token, kv_lora_rank %d\n",
                info->architecture.c_str(), info->backend.c_str(), info->vocab_size, info->hidden_size,
                info->n_layers, info->n_experts_per_token, info->n_routed_experts, info->kv_lora_rank);

    // Two sessions of one model, each used by its own thread.
    const std::vector<int32_t> prompts[2] = {{0, 17, 42}, {0, 99, 7}};
    std::vector<sibyl::Session> sessions;
    for (int i = 0; i < 2; ++i) {
        sibyl::Result<sibyl::Session> session = model.create_session();
        if (!session) {
            std::fprintf(stderr, "session: %s\n", session.error().message.c_str());
            return 1;
        }
        sessions.push_back(std::move(session).value());
    }
    bool ok[2] = {false, false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
        threads.emplace_back([&, i] {
            sibyl::GenerateOptions gen;  // greedy by default
            gen.max_new_tokens = 8;
            auto tokens = sessions[i].generate(prompts[i], gen, [i](int32_t token) {
                std::printf("session %d: token %d\n", i, token);
                return false;  // true would stop generation
            });
            if (tokens)
                std::printf("session %d: %zu tokens generated\n", i, tokens->size());
            else
                std::fprintf(stderr, "session %d: %s\n", i, tokens.error().message.c_str());
            ok[i] = tokens.ok();
        });
    }
    for (std::thread& t : threads) t.join();
    if (!ok[0] || !ok[1]) return 1;

    // Errors: a code plus the library's message, returned as a value.
    const int32_t bad_token = info->vocab_size;  // one past the last valid id
    sibyl::Error error = sessions[0].append({bad_token});
    std::printf("appending token %d: %s: %s\n", bad_token, std::string(error.status_name()).c_str(),
                error.message.c_str());
    return error.code == SIBYL_ERR_INVALID_TOKEN ? 0 : 1;
}
