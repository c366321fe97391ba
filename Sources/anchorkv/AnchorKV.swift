import ArgumentParser

@main
struct AnchorKV: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "anchorkv", abstract: "KV-cache store for compressed document knowledge.")
}
