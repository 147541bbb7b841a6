// Project Settings > Plugins > Sibyl NPC: how the model every NPC shares is loaded
// (Config/DefaultGame.ini, section [/Script/SibylNpc.SibylNpcSettings]).
#pragma once

#include "CoreMinimal.h"
#include "Engine/DeveloperSettings.h"
#include "SibylNpcTypes.h"

#include "SibylNpcSettings.generated.h"

UCLASS(Config = Game, DefaultConfig, meta = (DisplayName = "Sibyl NPC"))
class SIBYLNPC_API USibylNpcSettings : public UDeveloperSettings
{
	GENERATED_BODY()

public:
	virtual FName GetCategoryName() const override { return TEXT("Plugins"); }

	/**
	 * Model directory, GGUF file or .sibyl pack. Relative paths start at the project's Content
	 * directory (stage it as non-asset content: see the README). Empty: the plugin's
	 * Resources/Models/tiny-reasoner when present, else the library's default model.
	 */
	UPROPERTY(Config, EditAnywhere, Category = "Model")
	FString ModelPath;

	UPROPERTY(Config, EditAnywhere, Category = "Model")
	ESibylNpcBackend Backend = ESibylNpcBackend::Auto;

	/** The CPU backend's threads; 0: all hardware threads. */
	UPROPERTY(Config, EditAnywhere, Category = "Model", meta = (ClampMin = "0"))
	int32 CpuThreads = 0;

	/**
	 * Library threads that run the NPCs' requests: -1 one (default), 0 none (the subsystem
	 * steps the model on the game thread every frame, StepBudgetMs at most).
	 */
	UPROPERTY(Config, EditAnywhere, Category = "Model", meta = (ClampMin = "-1"))
	int32 WorkerThreads = -1;

	/** Linux nice value of the library's threads (10: below the game's). */
	UPROPERTY(Config, EditAnywhere, Category = "Model", meta = (ClampMin = "0", ClampMax = "19"))
	int32 WorkerNice = 10;

	/** WorkerThreads 0: the time the model's step may take each frame. */
	UPROPERTY(Config, EditAnywhere, Category = "Model", meta = (ClampMin = "0.1", Units = "ms"))
	float StepBudgetMs = 2.f;

	/** Load the model when the game starts (a loading screen) rather than when the first NPC begins play. */
	UPROPERTY(Config, EditAnywhere, Category = "Model")
	bool bLoadOnStart = true;
};
