"""Live transcription and watch-word alerts while a call goes on.

``service`` places a spy per side of each answered call and runs the stream through the
recogniser; ``channels`` finds each side's channel; ``streams`` is one side's audio and
recognition loop; ``watch`` finds watch words with their times; ``hub`` hands frames to the
supervisors' and the agent's pages; ``routes`` and ``metrics`` are its web surface. The
AudioSocket protocol is :mod:`telephony.audiosocket`, the recogniser
:mod:`transcription.streaming`.
"""
