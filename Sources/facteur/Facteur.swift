import ArgumentParser

@main
struct Facteur: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "facteur", abstract: "A complete mail server.")
}
