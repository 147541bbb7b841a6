#include "SibylNpcSubsystem.h"

#include "Interfaces/IPluginManager.h"
#include "Misc/Paths.h"
#include "SibylNpcInternal.h"
#include "SibylNpcSettings.h"
#include "SharedModel.h"

namespace
{
	// Settings path → what the library loads ("" = its default model).
	FString ResolveModelPath(const FString& Setting)
	{
		FString Path = Setting.TrimStartAndEnd();
		if (Path.IsEmpty())
		{
			const TSharedPtr<IPlugin> Plugin = IPluginManager::Get().FindPlugin(TEXT("SibylNpc"));
			if (!Plugin.IsValid())
			{
				return FString();
			}
			Path = FPaths::Combine(Plugin->GetBaseDir(), TEXT("Resources/Models/tiny-reasoner"));
			if (!FPaths::FileExists(FPaths::Combine(Path, TEXT("config.json"))))
			{
				return FString();
			}
		}
		else if (FPaths::IsRelative(Path))
		{
			Path = FPaths::Combine(FPaths::ProjectContentDir(), Path);
		}
		// The library opens files itself: it needs a full path, not one relative to the engine's.
		return FPaths::ConvertRelativePathToFull(Path);
	}

	sibyl_npc::ModelConfig::Backend ToCore(ESibylNpcBackend Backend)
	{
		switch (Backend)
		{
		case ESibylNpcBackend::Cpu: return sibyl_npc::ModelConfig::Backend::Cpu;
		case ESibylNpcBackend::Cuda: return sibyl_npc::ModelConfig::Backend::Cuda;
		case ESibylNpcBackend::Vulkan: return sibyl_npc::ModelConfig::Backend::Vulkan;
		default: return sibyl_npc::ModelConfig::Backend::Auto;
		}
	}
}

void USibylNpcSubsystem::Initialize(FSubsystemCollectionBase& Collection)
{
	Super::Initialize(Collection);
	if (GetDefault<USibylNpcSettings>()->bLoadOnStart)
	{
		PreloadModel();
	}
}

void USibylNpcSubsystem::Deinitialize()
{
	Model.reset(); // NPCs still playing keep it alive until their EndPlay
	Super::Deinitialize();
}

bool USibylNpcSubsystem::PreloadModel()
{
	FString Error;
	return GetModel(Error) != nullptr;
}

FString USibylNpcSubsystem::GetModelDescription() const
{
	return Model ? SibylNpc::ToFString(Model->description()) : LoadError;
}

std::shared_ptr<sibyl_npc::SharedModel> USibylNpcSubsystem::GetModel(FString& OutError)
{
	if (Model || !LoadError.IsEmpty())
	{
		OutError = LoadError;
		return Model;
	}
	if (!SibylNpc::IsLibraryLoaded())
	{
		LoadError = OutError = TEXT("libsibyl is not loaded (see the log)");
		return nullptr;
	}
	const USibylNpcSettings* Settings = GetDefault<USibylNpcSettings>();
	sibyl_npc::ModelConfig Config;
	Config.path = SibylNpc::ToUtf8(ResolveModelPath(Settings->ModelPath));
	Config.backend = ToCore(Settings->Backend);
	Config.cpu_threads = Settings->CpuThreads;
	Config.worker_threads = Settings->WorkerThreads;
	Config.worker_nice = Settings->WorkerNice;

	const double Start = FPlatformTime::Seconds();
	std::string Error;
	Model = sibyl_npc::SharedModel::acquire(Config, &Error);
	if (!Model)
	{
		LoadError = OutError = SibylNpc::ToFString(Error);
		UE_LOG(LogSibylNpc, Error, TEXT("loading the Sibyl model failed: %s"), *LoadError);
		return nullptr;
	}
	UE_LOG(LogSibylNpc, Log, TEXT("model %s loaded in %.0f ms"), *SibylNpc::ToFString(Model->description()),
		(FPlatformTime::Seconds() - Start) * 1000.0);
	return Model;
}

void USibylNpcSubsystem::Tick(float DeltaTime)
{
	const float BudgetMs = FMath::Max(0.1f, GetDefault<USibylNpcSettings>()->StepBudgetMs);
	std::string Error;
	if (Model && Model->step(static_cast<uint64>(BudgetMs * 1000.f), &Error) < 0)
	{
		UE_LOG(LogSibylNpc, Warning, TEXT("model step failed: %s"), *SibylNpc::ToFString(Error));
	}
}

bool USibylNpcSubsystem::IsTickable() const
{
	return Model && Model->needs_steps();
}

ETickableTickType USibylNpcSubsystem::GetTickableTickType() const
{
	// The class default object exists too: only real subsystems tick.
	return HasAnyFlags(RF_ClassDefaultObject) ? ETickableTickType::Never : ETickableTickType::Conditional;
}

TStatId USibylNpcSubsystem::GetStatId() const
{
	RETURN_QUICK_DECLARE_CYCLE_STAT(USibylNpcSubsystem, STATGROUP_Tickables);
}
