// The first code an Android or JVM developer copies, as node-kit/examples/phone.rs is for Rust: find the
// computer, pair once (either door), then send a prompt and stream the answer, answering the agent's
// prompts at the terminal.
//
//   phone [--state DIR] [--connect 'lanyard://…'] [--name NAME] [--no-mdns] PROMPT
//
// The device key and the pairing live in --state (node-kit's 0600 file store; a phone passes its
// Keychain or Keystore instead).
package dev.lanyard.nodekit.example

import dev.lanyard.nodekit.Decision
import dev.lanyard.nodekit.Discovered
import dev.lanyard.nodekit.NodeKit
import dev.lanyard.nodekit.TurnEventKind
import dev.lanyard.nodekit.TurnUpdate
import dev.lanyard.nodekit.defaultConnectOptions
import dev.lanyard.nodekit.discover
import dev.lanyard.nodekit.fileKeyStore
import dev.lanyard.nodekit.prompt
import dev.lanyard.nodekit.turn
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

fun main(args: Array<String>) = runBlocking<Unit> {
    var state = ".lanyard-phone"
    var connect: String? = null
    var name = "Example phone"
    var mdns = true
    val words = mutableListOf<String>()
    val rest = args.iterator()
    while (rest.hasNext()) {
        when (val arg = rest.next()) {
            "--state" -> state = rest.next()
            "--connect" -> connect = rest.next()
            "--name" -> name = rest.next()
            "--no-mdns" -> mdns = false
            else -> words += arg
        }
    }
    require(words.isNotEmpty()) { "usage: phone [--state DIR] [--connect STRING] [--name NAME] [--no-mdns] PROMPT" }

    val kit = NodeKit(fileKeyStore(state), name, "jvm")
    val computer = kit.computers().firstOrNull() ?: if (connect != null) {
        System.err.println("pairing using the connection string's one-time code")
        kit.pairWithConnectionString(connect)
    } else {
        System.err.println("looking for a Lanyard computer on the local network…")
        val found = withTimeout(30_000) { discover().filterIsInstance<Discovered.Found>().first() }.computer
        val approval = kit.requestPairing(found.addresses.first(), found.name)
        System.err.println("Approve this device on ${found.name ?: "the computer"}; check that it shows the code ${approval.sas()}")
        approval.approved()
    }

    val connection = kit.connect(computer.bridgeId, defaultConnectOptions().copy(mdns = mdns), null, null)
    try {
        val turn = connection.turn(prompt(words.joinToString(" ")))
        turn.updates.collect { update ->
            when (update) {
                is TurnUpdate.Event -> when (val kind = update.event.kind) {
                    is TurnEventKind.Text -> print(kind.text).also { System.out.flush() }
                    is TurnEventKind.Permission -> {
                        val allow = yes("\n${kind.summary}\nAllow? [y/N] ")
                        val decision = if (allow) Decision.ALLOW else Decision.DENY
                        // Another device may have answered first (PROMPT_CLOSED): the turn goes on either way.
                        runCatching { connection.respond(turn.runId, kind.requestId, decision, null, emptyMap()) }
                            .onFailure { System.err.println("the answer was not taken: ${it.message}") }
                    }
                    is TurnEventKind.Question -> {
                        val answers = kind.questions.associate { question ->
                            println("\n${question.question}")
                            question.options.forEachIndexed { n, option -> println("  ${n + 1}) ${option.label}") }
                            val n = (readlnOrNull() ?: error("stdin closed")).trim().toIntOrNull() ?: 1
                            question.question to question.options[(n - 1).coerceIn(question.options.indices)].label
                        }
                        connection.respond(turn.runId, kind.requestId, Decision.ALLOW, null, answers)
                    }
                    is TurnEventKind.Plan -> {
                        val approve = yes("\n${kind.plan}\nApprove this plan? [y/N] ")
                        connection.respond(turn.runId, kind.requestId, if (approve) Decision.ALLOW else Decision.DENY, null, emptyMap())
                    }
                    else -> {}
                }
                is TurnUpdate.Finished -> println()
            }
        }
    } finally {
        connection.close()
    }
}

private fun yes(question: String): Boolean {
    print(question)
    System.out.flush()
    return (readlnOrNull() ?: error("stdin closed before an answer was given")).trim() in setOf("y", "Y", "yes")
}
