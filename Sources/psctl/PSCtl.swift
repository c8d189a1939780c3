import ArgumentParser
import Foundation
import ScenePSClient
import ScenePSCore

@main
struct PSCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "psctl",
        abstract: "ScenePS control tool: data generation and preparation, title embeddings, cluster status, evaluation.",
        // The one list of subcommands: add new ones here.
        subcommands: [
            GenData.self,
            Prepare.self,
            Plan.self,
            Evaluate.self,
            Recommend.self,
            Scale.self,
            Status.self,
            Report.self,
            Supervise.self,
            EmbedTitles.self,
            ReduceTitles.self,
            Shutdown.self,
            CheckpointCommand.self,
            VerifyCheckpoint.self,
            Probe.self,
            Keys.self,
        ]
    )
}

/// Runs `body`; an error of ScenePS (its data, its client, its coordinator)
/// is printed as one line on stderr and turned into exit code 1 (never a
/// trap or a stack trace). ArgumentParser's own errors pass through.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ScenePSError {
        printError("psctl: error: \(e.message)")
        throw ExitCode(1)
    } catch let e as PSClientError {
        printError("psctl: error: \(e)")
        throw ExitCode(1)
    } catch let e as CoordinatorError {
        printError("psctl: error: \(e)")
        throw ExitCode(1)
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
