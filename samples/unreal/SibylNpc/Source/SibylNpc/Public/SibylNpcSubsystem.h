// Holds the one model all Sibyl NPC components share, for the game instance's lifetime (the
// model itself is reference-counted: NPCs still playing keep it until they end, whichever goes
// first). With WorkerThreads 0 it also runs the model's step once per frame.
#pragma once

#include "CoreMinimal.h"
#include "Subsystems/GameInstanceSubsystem.h"
#include "Tickable.h"

#include <memory>

#include "SibylNpcSubsystem.generated.h"

namespace sibyl_npc
{
class SharedModel;
}

UCLASS()
class SIBYLNPC_API USibylNpcSubsystem : public UGameInstanceSubsystem, public FTickableGameObject
{
	GENERATED_BODY()

public:
	virtual void Initialize(FSubsystemCollectionBase& Collection) override;
	virtual void Deinitialize() override;

	/** Load the shared model now unless it is loaded (blocks; the first NPC does it otherwise). */
	UFUNCTION(BlueprintCallable, Category = "Sibyl")
	bool PreloadModel();

	UFUNCTION(BlueprintPure, Category = "Sibyl")
	bool IsModelLoaded() const { return Model != nullptr; }

	/** The model's path, backend and size, or why it did not load. */
	UFUNCTION(BlueprintPure, Category = "Sibyl")
	FString GetModelDescription() const;

	/** The shared model (loaded on first use); null with the reason in OutError. C++ only. */
	std::shared_ptr<sibyl_npc::SharedModel> GetModel(FString& OutError);

	// FTickableGameObject: steps the model when it has no worker threads.
	virtual void Tick(float DeltaTime) override;
	virtual bool IsTickable() const override;
	virtual ETickableTickType GetTickableTickType() const override;
	virtual TStatId GetStatId() const override;

private:
	std::shared_ptr<sibyl_npc::SharedModel> Model;
	FString LoadError; // set once a load failed: not retried every time an NPC begins play
};
