// Includes the Sibyl C++ SDK in a way that also works inside an Unreal module, where every
// .cpp sees the engine's shared precompiled header first: Unreal defines `check` and `verify`
// as macros (the SDK has a function named check), and wraps third-party code in its
// THIRD_PARTY_INCLUDES_START/END warning guards. Outside Unreal this is a plain include.
#pragma once

#if defined(THIRD_PARTY_INCLUDES_START)
THIRD_PARTY_INCLUDES_START
#endif
#pragma push_macro("check")
#pragma push_macro("verify")
#undef check
#undef verify

#include <sibyl/sibyl.hpp>

#pragma pop_macro("verify")
#pragma pop_macro("check")
#if defined(THIRD_PARTY_INCLUDES_END)
THIRD_PARTY_INCLUDES_END
#endif
