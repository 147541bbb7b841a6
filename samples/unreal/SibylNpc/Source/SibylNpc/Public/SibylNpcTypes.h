// Blueprint types of the Sibyl NPC plugin (mirrors of the core's, see Private/Core/NpcBrain.h).
#pragma once

#include "CoreMinimal.h"

#include "SibylNpcTypes.generated.h"

/** Why a question's reply ended. */
UENUM(BlueprintType)
enum class ESibylNpcStopReason : uint8
{
	Answered,   // the model finished its reply
	MaxTokens,  // MaxNewTokens ran out: the answer may be cut short
	StopString, // the answer reached one of the StopStrings
	Cancelled,  // CancelAll, or the NPC left play
	Error,      // the reply's Error says why
};

/** May the model call the NPC's actions? */
UENUM(BlueprintType)
enum class ESibylNpcActionChoice : uint8
{
	Auto,   // it answers in text or calls actions
	Never,  // it knows them but answers in text
	Always, // its answer is one or more action calls
};

/** Which compute backend runs the shared model. */
UENUM(BlueprintType)
enum class ESibylNpcBackend : uint8
{
	Auto, // the first usable of CUDA, Vulkan, CPU built into the library
	Cpu,
	Cuda,
	Vulkan,
};

/** A game action the model may call (a tool); calls arrive through OnAction. */
USTRUCT(BlueprintType)
struct FSibylNpcAction
{
	GENERATED_BODY()

	/** 1 to 64 of A-Z a-z 0-9 _ . - */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl")
	FString Name;

	/** What the action does, for the model. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (MultiLine = true))
	FString Description;

	/** JSON Schema of its arguments; empty: any JSON object. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Sibyl", meta = (MultiLine = true))
	FString ParametersSchema;
};

/** A question's whole reply, once it has ended. */
USTRUCT(BlueprintType)
struct FSibylNpcReply
{
	GENERATED_BODY()

	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	int32 QuestionId = 0;

	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	FString Question;

	/** The model's thinking (never shown to players by the plugin itself). */
	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	FString Reasoning;

	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	FString Answer;

	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	ESibylNpcStopReason StopReason = ESibylNpcStopReason::Answered;

	/** StopReason Error: the library's message. */
	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	FString Error;

	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	int32 GeneratedTokens = 0;

	/** From the question's submission to its first token, and to its end. */
	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	float FirstTokenMs = 0.f;

	UPROPERTY(BlueprintReadOnly, Category = "Sibyl")
	float TotalMs = 0.f;
};
