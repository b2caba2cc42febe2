"""What generated accounts are made of: names, texts, companies, templates and numbers.

Plain data, and the helpers that draw texts and numbers from it; the generator decides how
many of what, and in which order they are drawn (generator.py, context_generator.py).
"""

from __future__ import annotations

import random

FIRST_NAMES = [
    "Ana",
    "Bob",
    "Chen",
    "Dmitri",
    "Zoë",
    "José",
    "Aoife",
    "Łukasz",
    "Søren",
    "Nguyễn",
    "Fatima",
    "Kwame",
    "Yuki",
    "Priya",
    "Oğuz",
    "Björk",
    "李",
    "Марина",
]
LAST_NAMES = [
    "Smith",
    "Núñez",
    "Ångström",
    "O'Brien",
    "Müller",
    "Kowalski",
    "Okafor",
    "Tanaka",
    "Gupta",
    "Þórsson",
    "王",
    "Иванова",
    "García-López",
    "van der Berg",
]
PHRASES = [
    "Hi {name}, just following up on our call.",
    "Your appointment is confirmed for {day} at {hour}:00.",
    "Thanks! I'll send the contract over today.",
    "Can you talk tomorrow at {hour}?",
    "Reminder: your invoice #{num} is due on {day}.",
    "Got it, thanks {name}.",
    "Please call me back when you can.",
    "STOP",
    "Yes, that works for me.",
    "Here is the link we discussed: https://example.com/d/{num}",
    "Quote #{num}: $1,{num3}.00 — valid for 30 days.",
    "¿Podemos hablar mañana a las {hour}?",
    "Danke für Ihre Nachricht! Wir melden uns.",
    "お問い合わせありがとうございます。",
    "谢谢！我们明天见。",
    "Спасибо, договорились.",
    "شكرا لك، سأتصل بك غدا",
    "Great news 🎉🎉 the deal is approved! 👍🏽",
    "On my way 🚗💨 ETA {hour} min",
    "❤️ Thank you so much, {name}! 🙏",
    "Family pack 👨‍👩‍👧‍👦 order #{num} shipped 📦",
    "Line one\nLine two\n\tIndented line three",
    'Quote "{name}" said: it\'s 100% <fine> & done',
]
# Texts that break careless code: empty, NUL bytes, emoji sequences, combining marks,
# right-to-left and bidi controls, CR LF, tabs, quotes, backslashes, invisible characters.
HOSTILE_TEXTS = [
    "",
    "\x00",
    "before\x00after",
    "NUL at the end\x00",
    "👩🏽‍💻👨‍👩‍👧‍👦🏳️‍🌈 🇩🇪🇯🇵 1️⃣",
    "Z\u0351\u0357a\u0310\u036clg\u0306\u0352o\u0308\u0301 e\u0301 n\u0303",
    "שלום, מה שלומך? مرحبا بك 123",
    "\u202eevil.exe\u202c txt \u2066isolated\u2069",
    "line one\r\nline two\r\n\r\nline four",
    "col1\tcol2\t\tcol4\t",
    "She said \"hi\" and 'bye' `ok`",
    "C:\\Users\\temp\\new \\n is not a newline \\",
    '{"data": [], "has_more": false}',
    "'); DROP TABLE sms; --",
    "\ufeffBOM first, zero\u200bwidth, line\u2028separator\u2029end",
    "   leading and trailing spaces   ",
]
# Very long hostile text: mixed multi-byte characters far beyond any SMS segment count.
HOSTILE_LONG_CHARS = 100_000

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "2026-07-01", "01/02"]
ERROR_MESSAGES = [
    "Message blocked by carrier.",
    "Unreachable destination handset.",
    "Invalid 'To' Phone Number",
    "Message filtered as spam by the carrier.",
    "Landline or unreachable carrier.",
    "Queue overflow: too many messages to this number.",
]
SEQUENCES = [
    ("seq_onboarding", "Onboarding 🚀"),
    ("seq_followup", "Follow-up (5 steps)"),
    ("seq_renewal", "Renewal — Q3"),
    ("seq_reactivation", "Réactivation"),
]
# SMS templates: (id, name, text); the ids are the template_id values of generated SMS.
TEMPLATES = [
    ("smstmpl_welcome", "Welcome 👋", "Hi {{ contact.first_name }}, welcome aboard!"),
    ("smstmpl_reminder", "Reminder", "Reminder: we talk on {{ date }}."),
    ("smstmpl_quote", "Quote sent", "Your quote from {{ organization.name }} is ready."),
    ("smstmpl_thanks", "Thank you", "Thanks {{ contact.first_name }}!"),
]
LEAD_STATUSES = ["Potential", "Bad Fit", "Qualified", "Customer", "Not Interested"]
COMPANY_WORDS = ["Bluth", "Acme", "Sitwell", "Nord", "Øresund", "Saint-Étienne", "東京", "Vega"]
COMPANY_KINDS = ["Holdings", "Realty", "Bakery", "Logistics", "GmbH", "& Söhne", "Labs", "Ltd."]
TITLES = ["CEO", "Buyer", "Office manager", "Einkäufer", "Director of Operations", None]
INDUSTRIES = ["Construction", "Retail", "Software", "Food & Drink", "Logística"]
# Lead custom fields: (name, type, choices).
CUSTOM_FIELDS = [
    ("Industry", "text", None),
    ("Employees", "number", None),
    ("Renewal date", "date", None),
    ("Plan", "choices", ["Free", "Starter", "Pro", "Enterprise"]),
]
# Numbers shared by a group of users: (label, number).
GROUP_NUMBERS = [("Support line", "+16505552000"), ("Sales team", "+16505552001")]


def phone_number(rng: random.Random, country: int) -> str:
    """A random number of the US (country 0), the UK (1) or Germany (2)."""
    if country == 0:
        return f"+1{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
    if country == 1:
        return f"+447{rng.randint(100_000_000, 999_999_999)}"
    return f"+4915{rng.randint(10_000_000, 99_999_999)}"


def text_pool(rng: random.Random, size: int) -> tuple[list[str], list[str]]:
    """Ordinary texts and very long texts (Close splits long SMS into segments)."""
    names = [f"{f}" for f in FIRST_NAMES]
    normal = []
    for _ in range(size):
        phrase = rng.choice(PHRASES)
        normal.append(
            phrase.format(
                name=rng.choice(names),
                day=rng.choice(DAYS),
                hour=rng.randint(1, 12),
                num=rng.randint(1000, 99999),
                num3=f"{rng.randint(0, 999):03d}",
            )
        )
    long_texts = []
    for length in (1_600, 3_000, 5_000, 10_000):
        words = []
        total = 0
        while total < length:
            word = rng.choice(normal)
            words.append(word)
            total += len(word) + 1
        long_texts.append(" ".join(words)[:length])
    return normal, long_texts


def hostile_pool(rng: random.Random) -> list[str]:
    """The hostile texts plus one very long text of them, shuffled by the seed."""
    pieces = [t for t in HOSTILE_TEXTS if t] + ["ü€𝄞"]
    long_text = ""
    while len(long_text) < HOSTILE_LONG_CHARS:
        long_text += rng.choice(pieces)
    return [*HOSTILE_TEXTS, long_text[:HOSTILE_LONG_CHARS]]
