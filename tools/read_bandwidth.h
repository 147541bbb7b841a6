// Memory read bandwidth, as decode sees it: N threads streaming a buffer far larger than
// the caches. sibyl-bench divides it by the bytes one decoded token reads to get the
// memory-bandwidth ceiling of decode.
#pragma once

namespace sibyl::cli {

// Best of a few passes over `mib` MiB with `threads` threads; bytes per second.
double read_bandwidth(int threads, int mib = 512);

}  // namespace sibyl::cli
