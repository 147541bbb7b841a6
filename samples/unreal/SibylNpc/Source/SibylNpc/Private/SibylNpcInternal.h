// What the module's .cpp files share: the log category, the library's load state, and UTF-8
// conversions between FString and the core's std::string (inline: unity builds merge files).
#pragma once

#include "CoreMinimal.h"

#include <string>

DECLARE_LOG_CATEGORY_EXTERN(LogSibylNpc, Log, All);

namespace SibylNpc
{
	/** True once StartupModule found libsibyl; no Sibyl call may run before (Windows, Mac: delay-loaded). */
	bool IsLibraryLoaded();

	inline std::string ToUtf8(const FString& Text)
	{
		FTCHARToUTF8 Converted(*Text);
		return std::string(reinterpret_cast<const char*>(Converted.Get()), static_cast<size_t>(Converted.Length()));
	}

	inline FString ToFString(const std::string& Text)
	{
		FUTF8ToTCHAR Converted(Text.data(), static_cast<int32>(Text.size()));
		return FString(Converted.Length(), Converted.Get());
	}
}
