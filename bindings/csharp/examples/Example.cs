// Example.cs — the C# binding in one program: a blocking chat, a streamed one, and the
// non-blocking loop a game runs (submit, poll once per frame, cancel). docs/CSHARP.md shows it;
// CTest (csharp_example) builds and runs it.
//   mcs -r:Sibyl.dll Example.cs && LD_LIBRARY_PATH=/path/to/libsibyl mono Example.exe  (Sibyl.dll beside it)
using System;
using System.Threading;
using Sibyl;

internal static class Example
{
    private static int Main()
    {
        try
        {
            using (var model = new Model())               // the default model: the embedded tiny-reasoner
            using (var session = new Session(model))
            {
                // 1. Blocking: the whole reply at once.
                ChatReply reply = session.Chat("What is 347 + 589?");
                Console.WriteLine("thinking: " + reply.Reasoning);
                Console.WriteLine("answer:   " + reply.Answer + "  (" + reply.StopReason + ", " + reply.GeneratedTokens + " tokens)");

                // 2. Streamed: pieces as they are generated (on this thread).
                session.Chat(new[] { ChatMessage.User("How many r are in strawberry?") }, new ChatOptions { MaxNewTokens = 200 },
                             (channel, piece) => Console.Write(channel == Channel.Answer ? piece : "."));
                Console.WriteLine();

                // 3. Non-blocking, as a game loop: submit, then poll once per "frame" (never waits).
                using (Request request = session.SubmitChat("What is 905 - 277?"))
                {
                    string answer = "";
                    for (int frame = 0; !request.IsDone; frame++)
                    {
                        Event e;
                        while ((e = request.Poll()) != null)      // drain what is queued, then go on
                        {
                            if (e.Type == EventType.Text && e.Channel == Channel.Answer) answer += e.Text;
                            if (e.IsDone) Console.WriteLine("frame " + frame + ": " + answer + " (" + e.StopReason + ")");
                        }
                        Thread.Sleep(16);                          // the rest of the frame
                    }
                }

                // 4. Cancel: a request stops before the model's next step.
                using (Request request = session.SubmitChat("What is 6238 + 76?"))
                {
                    request.Cancel();
                    Event e;
                    do
                    {
                        request.Wait(-1);
                        e = request.Poll();
                    } while (e == null || !e.IsDone);
                    Console.WriteLine("cancelled request: " + e.StopReason);
                }
            }
            return 0;
        }
        catch (SibylException e)
        {
            Console.Error.WriteLine("sibyl: " + e.Status + ": " + e.Message);
            return 1;
        }
    }
}
