"""Classification with probabilities: each label's exact probability, not only the likeliest one.

    python examples/classify_probs.py

``structgen.probs`` scores every label token by token under the model (prefix-shared, in one batch) and normalises
over the labels; ``outside`` is the mass the model put on anything else. ``generate`` with ``Choice`` gives the
label itself, always one of them.
"""

from __future__ import annotations

import structgen

LABELS = ["billing", "bug", "feature request"]
MESSAGES = [
    "I was charged twice for my subscription this month.",
    "The app crashes when I open the settings page.",
    "Could you add a dark mode?",
]


def main(messages: list[str] = MESSAGES) -> list[tuple[str, dict[str, float]]]:
    """For each message: the chosen label and every label's probability (printed and returned)."""
    rows = []
    for message in messages:
        prompt = f"Classify the support message as billing, bug or feature request.\nMessage: {message}"
        label = structgen.generate(prompt, schema=structgen.Choice(LABELS), seed=0).value
        p = structgen.probs(prompt, LABELS)
        probabilities = dict(p)                         # a mapping label -> probability
        print(f"{label:16} " + "  ".join(f"{k} {v:.2f}" for k, v in probabilities.items())
              + f"  (outside {p.outside:.2f})  | {message}")
        rows.append((label, probabilities))
    return rows


if __name__ == "__main__":
    main()
