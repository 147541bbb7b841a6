// (being written)
#include "model_source.h"
#include "failure.h"
namespace sibyl::engine {
std::unique_ptr<ModelSource> open_gguf(const std::string& path) { fail(Errc::unsupported, path + ": GGUF import pending"); }
std::unique_ptr<ModelSource> open_pack(const std::string& path) { fail(Errc::unsupported, path + ": pack pending"); }
}
