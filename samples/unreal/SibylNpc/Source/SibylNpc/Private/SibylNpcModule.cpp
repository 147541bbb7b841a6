// Loads libsibyl and routes its log into Unreal's. On Windows and Mac the library is
// delay-loaded: it is loaded here, from the plugin's ThirdParty folder, before any call into
// it. On Linux the module links it directly (found through the RPATH the build records).
#include "SibylNpcInternal.h"

#include "HAL/PlatformProcess.h"
#include "Interfaces/IPluginManager.h"
#include "Misc/Paths.h"
#include "Modules/ModuleManager.h"

THIRD_PARTY_INCLUDES_START
#include <sibyl/sibyl.h>
THIRD_PARTY_INCLUDES_END

DEFINE_LOG_CATEGORY(LogSibylNpc);

namespace
{
	bool GLibraryLoaded = false;

	// Runs on whichever thread logs (the library's workers too): UE_LOG is thread-safe.
	void RouteLog(sibyl_log_level Level, const char* Message, void* /*UserData*/)
	{
		const FString Text = UTF8_TO_TCHAR(Message ? Message : "");
		switch (Level)
		{
		case SIBYL_LOG_ERROR: UE_LOG(LogSibylNpc, Error, TEXT("libsibyl: %s"), *Text); break;
		case SIBYL_LOG_WARN: UE_LOG(LogSibylNpc, Warning, TEXT("libsibyl: %s"), *Text); break;
		case SIBYL_LOG_INFO: UE_LOG(LogSibylNpc, Log, TEXT("libsibyl: %s"), *Text); break;
		default: UE_LOG(LogSibylNpc, Verbose, TEXT("libsibyl: %s"), *Text); break;
		}
	}
}

bool SibylNpc::IsLibraryLoaded()
{
	return GLibraryLoaded;
}

class FSibylNpcModule : public IModuleInterface
{
public:
	virtual void StartupModule() override
	{
#if PLATFORM_WINDOWS || PLATFORM_MAC
#if PLATFORM_WINDOWS
		const TCHAR* Library = TEXT("ThirdParty/Sibyl/lib/Win64/sibyl.dll");
#else
		const TCHAR* Library = TEXT("ThirdParty/Sibyl/lib/Mac/libsibyl.0.dylib");
#endif
		const TSharedPtr<IPlugin> Plugin = IPluginManager::Get().FindPlugin(TEXT("SibylNpc"));
		const FString Path = FPaths::Combine(Plugin.IsValid() ? Plugin->GetBaseDir() : FString(), Library);
		// Kept loaded until the process exits: the library's worker threads may still be
		// finishing a step when the module shuts down.
		if (!FPlatformProcess::GetDllHandle(*Path))
		{
			UE_LOG(LogSibylNpc, Error, TEXT("cannot load %s: Sibyl NPCs stay silent"), *Path);
			return;
		}
#endif
		GLibraryLoaded = true;
		sibyl_set_log_callback(&RouteLog, nullptr, SIBYL_LOG_INFO);
		UE_LOG(LogSibylNpc, Log, TEXT("libsibyl %s (built against %d.%d)"), UTF8_TO_TCHAR(sibyl_version_string()),
			SIBYL_ABI_VERSION_MAJOR, SIBYL_ABI_VERSION_MINOR);
	}

	virtual void ShutdownModule() override
	{
		if (GLibraryLoaded)
		{
			sibyl_set_log_callback(nullptr, nullptr, SIBYL_LOG_WARN); // back to stderr: RouteLog's module may go
		}
	}
};

IMPLEMENT_MODULE(FSibylNpcModule, SibylNpc)
