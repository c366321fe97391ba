import ArgumentParser

@main
struct AnchorKV: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "anchorkv",
        abstract: "KV-cache store for compressed document knowledge.",
        discussion: """
            AnchorKV compresses documents once into the key/value tensors of a few anchor tokens \
            (Semantic-Anchor Compression) and answers questions from those tensors.
            Run tools/setup.sh once to install the system libraries and the default model. \
            Benchmarks and the answer-quality evaluation are in anchorkv-bench.
            """,
        subcommands: [IngestCommand.self, QueryCommand.self, ServeCommand.self, StatsCommand.self, DocsCommand.self, SweepCommand.self, ExportCommand.self, ImportCommand.self, SnapshotCommand.self, CompactCommand.self, CompressCommand.self, AskCommand.self, GenerateCommand.self])
}
