// An NPC that answers questions with the shared Sibyl model. Ask() queues a question and returns
// at once; every frame TickComponent reads what the model produced (under PollBudgetMs) and
// broadcasts it: reasoning and answer text as it streams, actions the model calls, and the
// whole reply when it ends. EndPlay cancels what this NPC asked. A thin adapter over the
// engine-independent sibyl_npc::NpcBrain (Private/Core/NpcBrain.h).
#pragma once

#include "CoreMinimal.h"
#include "Components/ActorComponent.h"
#include "SibylNpcTypes.h"

#include <memory>

#include "SibylNpcComponent.generated.h"

namespace sibyl_npc
{
class NpcBrain;
}

DECLARE_DYNAMIC_MULTICAST_DELEGATE_ThreeParams(FSibylNpcTextSignature, int32, QuestionId, const FString&, NewText,
	const FString&, TextSoFar);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_ThreeParams(FSibylNpcActionSignature, int32, QuestionId, const FString&, Action,
	const FString&, ArgumentsJson);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FSibylNpcFinishedSignature, const FSibylNpcReply&, Reply);

UCLASS(ClassGroup = (AI), meta = (BlueprintSpawnableComponent), DisplayName = "Sibyl NPC")
class SIBYLNPC_API USibylNpcComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	USibylNpcComponent();

	// ---- How this NPC talks (read when play begins)

	/** The system prompt: who the NPC is. Empty: none. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (MultiLine = true))
	FString Persona;

	/** Later questions see the earlier questions and answers (the model reuses their cache). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl")
	bool bRememberConversation = true;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (ClampMin = "1"))
	int32 MaxRememberedExchanges = 8;

	/** Questions that may wait behind the one being answered; Ask refuses more. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (ClampMin = "0"))
	int32 MaxWaitingQuestions = 4;

	/** Reasoning plus answer tokens per reply. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (ClampMin = "1"))
	int32 MaxNewTokens = 400;

	/** Reasoning tokens after which the answer is forced; -1: no limit. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (ClampMin = "-1"))
	int32 ThinkBudget = -1;

	/** False: answer without reasoning (on models whose template allows it). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl")
	bool bThinking = true;

	/** The answer ends before the first of these. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl")
	TArray<FString> StopStrings;

	/** 0: greedy (the same question, the same answer). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (ClampMin = "0.0"))
	float Temperature = 0.f;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl")
	int32 Seed = 0;

	/** Game actions the model may call (needs a model whose chat template has tool calls). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl|Actions")
	TArray<FSibylNpcAction> Actions;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl|Actions")
	ESibylNpcActionChoice ActionChoice = ESibylNpcActionChoice::Auto;

	/** The frame time this NPC may spend reading the model's output. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (ClampMin = "0.0", Units = "ms"))
	float PollBudgetMs = 1.f;

	// ---- Events (game thread)

	UPROPERTY(BlueprintAssignable, Category = "Sibyl")
	FSibylNpcTextSignature OnReasoningText;

	UPROPERTY(BlueprintAssignable, Category = "Sibyl")
	FSibylNpcTextSignature OnAnswerText;

	UPROPERTY(BlueprintAssignable, Category = "Sibyl")
	FSibylNpcActionSignature OnAction;

	UPROPERTY(BlueprintAssignable, Category = "Sibyl")
	FSibylNpcFinishedSignature OnFinished;

	// ---- Calls

	/** Queue a question (player text stays plain text). Its id, or 0 when refused (GetLastError). */
	UFUNCTION(BlueprintCallable, Category = "Sibyl")
	int32 Ask(const FString& Question);

	/** Stop the reply under way and drop the waiting questions (each finishes as Cancelled). */
	UFUNCTION(BlueprintCallable, Category = "Sibyl")
	void CancelAll();

	/** Forget the remembered exchanges (the persona stays). */
	UFUNCTION(BlueprintCallable, Category = "Sibyl")
	void ForgetConversation();

	UFUNCTION(BlueprintPure, Category = "Sibyl")
	bool IsBusy() const;

	/** The id of the question being answered, 0 when none. */
	UFUNCTION(BlueprintPure, Category = "Sibyl")
	int32 GetCurrentQuestion() const;

	UFUNCTION(BlueprintPure, Category = "Sibyl")
	FString GetLastError() const { return LastError; }

protected:
	virtual void BeginPlay() override;
	virtual void EndPlay(const EEndPlayReason::Type EndPlayReason) override;
	virtual void TickComponent(float DeltaTime, ELevelTick TickType,
		FActorComponentTickFunction* ThisTickFunction) override;

private:
	// shared_ptr: its deleter is bound in the .cpp, where NpcBrain is complete.
	std::shared_ptr<sibyl_npc::NpcBrain> Brain;
	FString LastError;
};
