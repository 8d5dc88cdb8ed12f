"""OpenAI's Responses API (``POST /v1/responses``) for targets that speak only chat.

Targets that speak Responses natively (``openai``, ``azure-openai``) get the request as
sent. For every other target, :mod:`.bridge` wraps the target's adapter: :mod:`.request`
turns the stateless subset of a Responses request into a chat request, :mod:`.answer`
turns the chat completion into a Response object, and :mod:`.events` turns the chat
stream into Responses streaming events. Stateful requests (``previous_response_id``,
``conversation``, ``store: true``, ``background``, item references) are refused there
with a 400, which a fallback config moves on from to a target that speaks Responses.

Wire facts: the Responses API reference (https://platform.openai.com/docs/api-reference/responses)
and its streaming events (https://platform.openai.com/docs/api-reference/responses-streaming),
checked in the tests against the openai SDK's own types (``openai.types.responses``).
"""
