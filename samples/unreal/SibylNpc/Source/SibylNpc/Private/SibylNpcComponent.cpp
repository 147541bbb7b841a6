#include "SibylNpcComponent.h"

#include "Engine/GameInstance.h"
#include "Engine/World.h"
#include "NpcBrain.h"
#include "SibylNpcInternal.h"
#include "SibylNpcSubsystem.h"

namespace
{
	ESibylNpcStopReason ToBlueprint(sibyl_npc::StopReason Reason)
	{
		switch (Reason)
		{
		case sibyl_npc::StopReason::Answered: return ESibylNpcStopReason::Answered;
		case sibyl_npc::StopReason::MaxTokens: return ESibylNpcStopReason::MaxTokens;
		case sibyl_npc::StopReason::StopString: return ESibylNpcStopReason::StopString;
		case sibyl_npc::StopReason::Cancelled: return ESibylNpcStopReason::Cancelled;
		default: return ESibylNpcStopReason::Error;
		}
	}
}

USibylNpcComponent::USibylNpcComponent()
{
	// Ticks only while a question is queued or under way (Ask turns it on).
	PrimaryComponentTick.bCanEverTick = true;
	PrimaryComponentTick.bStartWithTickEnabled = false;
}

void USibylNpcComponent::BeginPlay()
{
	Super::BeginPlay();
	const UGameInstance* GameInstance = GetWorld() ? GetWorld()->GetGameInstance() : nullptr;
	USibylNpcSubsystem* Subsystem = GameInstance ? GameInstance->GetSubsystem<USibylNpcSubsystem>() : nullptr;
	if (!Subsystem)
	{
		LastError = TEXT("no game instance: Sibyl NPCs talk only in a running game");
		return;
	}
	FString ModelError;
	std::shared_ptr<sibyl_npc::SharedModel> Model = Subsystem->GetModel(ModelError);
	if (!Model)
	{
		LastError = ModelError;
		return;
	}

	sibyl_npc::BrainOptions Options;
	Options.persona = SibylNpc::ToUtf8(Persona);
	Options.remember = bRememberConversation;
	Options.max_remembered = static_cast<size_t>(FMath::Max(1, MaxRememberedExchanges));
	Options.max_waiting = static_cast<size_t>(FMath::Max(0, MaxWaitingQuestions));
	Options.max_new_tokens = static_cast<uint32_t>(FMath::Max(1, MaxNewTokens));
	Options.think_budget = ThinkBudget;
	Options.thinking = bThinking;
	for (const FString& Stop : StopStrings)
	{
		Options.stop_strings.push_back(SibylNpc::ToUtf8(Stop));
	}
	Options.temperature = FMath::Max(0.f, Temperature);
	Options.seed = static_cast<uint64_t>(static_cast<uint32>(Seed));
	for (const FSibylNpcAction& Action : Actions)
	{
		Options.actions.push_back({SibylNpc::ToUtf8(Action.Name), SibylNpc::ToUtf8(Action.Description),
			SibylNpc::ToUtf8(Action.ParametersSchema)});
	}
	Options.action_choice = ActionChoice == ESibylNpcActionChoice::Never ? sibyl_npc::BrainOptions::ActionChoice::Never
		: ActionChoice == ESibylNpcActionChoice::Always ? sibyl_npc::BrainOptions::ActionChoice::Always
		: sibyl_npc::BrainOptions::ActionChoice::Auto;

	std::string Error;
	Brain = sibyl_npc::NpcBrain::create(std::move(Model), std::move(Options), &Error);
	if (!Brain)
	{
		LastError = SibylNpc::ToFString(Error);
		UE_LOG(LogSibylNpc, Warning, TEXT("%s: no Sibyl NPC: %s"), *GetNameSafe(GetOwner()), *LastError);
	}
}

void USibylNpcComponent::EndPlay(const EEndPlayReason::Type EndPlayReason)
{
	// Cancel this NPC's reply and queue, and free its session at once (a fraction of a
	// millisecond); the model stays with the subsystem and the other NPCs. Nothing is broadcast
	// after this.
	if (Brain)
	{
		Brain->cancel_all();
	}
	Brain.reset();
	SetComponentTickEnabled(false);
	Super::EndPlay(EndPlayReason);
}

int32 USibylNpcComponent::Ask(const FString& Question)
{
	if (!Brain)
	{
		if (LastError.IsEmpty())
		{
			LastError = TEXT("the NPC is not playing");
		}
		return 0;
	}
	std::string Error;
	const uint64_t Id = Brain->ask(SibylNpc::ToUtf8(Question), &Error);
	if (Id == 0)
	{
		LastError = SibylNpc::ToFString(Error);
		return 0;
	}
	SetComponentTickEnabled(true);
	return static_cast<int32>(Id);
}

void USibylNpcComponent::CancelAll()
{
	if (Brain)
	{
		Brain->cancel_all(); // the Cancelled replies arrive with the next ticks
	}
}

void USibylNpcComponent::ForgetConversation()
{
	if (Brain)
	{
		Brain->forget();
	}
}

bool USibylNpcComponent::IsBusy() const
{
	return Brain && Brain->busy();
}

int32 USibylNpcComponent::GetCurrentQuestion() const
{
	return Brain ? static_cast<int32>(Brain->current_question()) : 0;
}

void USibylNpcComponent::TickComponent(float DeltaTime, ELevelTick TickType,
	FActorComponentTickFunction* ThisTickFunction)
{
	Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
	if (!Brain)
	{
		SetComponentTickEnabled(false);
		return;
	}
	sibyl_npc::FrameOutput Frame;
	Brain->tick(static_cast<uint64_t>(FMath::Max(0.f, PollBudgetMs) * 1000.f), Frame);

	// A handler may do anything, even end this NPC's play (which resets Brain) or ask again:
	// only the local Frame is read from here on.
	for (const sibyl_npc::TextDelta& Delta : Frame.text)
	{
		FSibylNpcTextSignature& Event = Delta.channel == sibyl_npc::Channel::Reasoning ? OnReasoningText : OnAnswerText;
		Event.Broadcast(static_cast<int32>(Delta.question), SibylNpc::ToFString(Delta.text),
			SibylNpc::ToFString(Delta.so_far));
	}
	for (const sibyl_npc::ActionCall& Call : Frame.actions)
	{
		OnAction.Broadcast(static_cast<int32>(Call.question), SibylNpc::ToFString(Call.name),
			SibylNpc::ToFString(Call.arguments));
	}
	for (const sibyl_npc::Finished& Done : Frame.finished)
	{
		FSibylNpcReply Reply;
		Reply.QuestionId = static_cast<int32>(Done.question);
		Reply.Question = SibylNpc::ToFString(Done.question_text);
		Reply.Reasoning = SibylNpc::ToFString(Done.reasoning);
		Reply.Answer = SibylNpc::ToFString(Done.answer);
		Reply.StopReason = ToBlueprint(Done.reason);
		Reply.Error = SibylNpc::ToFString(Done.error);
		Reply.GeneratedTokens = static_cast<int32>(Done.generated_tokens);
		Reply.FirstTokenMs = static_cast<float>(Done.first_token_ms);
		Reply.TotalMs = static_cast<float>(Done.total_ms);
		if (Reply.StopReason == ESibylNpcStopReason::Error)
		{
			UE_LOG(LogSibylNpc, Warning, TEXT("%s: question %d failed: %s"), *GetNameSafe(GetOwner()), Reply.QuestionId,
				*Reply.Error);
		}
		OnFinished.Broadcast(Reply);
	}
	if (!Brain || !Brain->busy())
	{
		SetComponentTickEnabled(false);
	}
}
