r"""Draws a few clips of the synthetic voice, one of each kind, as spectrograms and WAV files.

  python -m experiments.synthetic_examples --output=docs/synthetic_examples.png
  python -m experiments.synthetic_examples --output=/tmp/ex.png --wav_dir=/tmp/ex  # to listen

The panels, on one colour scale: a clip of the first generator ("classic"), then takes of the
wide mix (`synthetic.Take`) chosen to show its range: sung phrases, spoken sentences, a choir
section, soft and loud voices, dry and through rooms of several sizes.
Bad input gets one line on stderr and exit status 2; no file is replaced without --overwrite.
"""

import os

import numpy as np
from absl import flags

from experiments import cli
from jaxrestore import audio, plots
from jaxrestore.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "The figure (PNG).")
flags.DEFINE_string("wav_dir", None, "Also write each clip as a WAV file into this folder.")
flags.DEFINE_float("seconds", 4.0, "Length of each clip.")
flags.DEFINE_integer("sample_rate", 22050, "Rate in Hz.")
flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def examples():
    """Returns (name, title, take or None for classic, seed, wet) for each panel."""
    mic = synthetic.Microphone(highpass_hz=60.0, presence_db=4.0, presence_hz=5000.0)
    return [
        ("classic", "classic: the first generator's clip 6 (dry)", None, 6, False),
        (
            "sung_soprano",
            "sung, soprano, moderate effort, dry",
            synthetic.Take("sung", "soprano", effort=0.6, level_db=-1.0),
            3,
            False,
        ),
        (
            "sung_bass_soft",
            "sung, bass, soft and breathy (effort 0.1), booth",
            synthetic.Take("sung", "bass", effort=0.1, room="booth", rt60=0.2, wet_mix=0.2),
            4,
            True,
        ),
        (
            "spoken_baritone",
            "spoken, baritone, dry, microphone with a 5 kHz presence peak",
            synthetic.Take("spoken", "baritone", effort=0.5, microphone=mic),
            12,
            False,
        ),
        (
            "spoken_mezzo",
            "spoken, mezzo, loud (effort 0.9), room RT60 0.6 s",
            synthetic.Take("spoken", "mezzo", effort=0.9, room="room", rt60=0.6, wet_mix=0.35),
            21,
            True,
        ),
        (
            "choir_alto",
            "choir of 4 altos (spread 12 cents), hall RT60 2 s",
            synthetic.Take(
                "choir",
                "alto",
                choir_size=4,
                detune_cents=12.0,
                room="hall",
                rt60=2.0,
                wet_mix=0.45,
            ),
            8,
            True,
        ),
    ]


def main(argv):
    del argv

    if not FLAGS.output:
        raise cli.UsageError("--output is required")
    if not 0.5 <= FLAGS.seconds <= 60:
        raise cli.UsageError(f"--seconds must lie in [0.5, 60], got {FLAGS.seconds}")
    panels = examples()
    outputs = [FLAGS.output]
    if FLAGS.wav_dir:
        outputs += [os.path.join(FLAGS.wav_dir, f"{name}.wav") for name, *_ in panels]
    if not FLAGS.overwrite:
        for path in outputs:
            if os.path.exists(path):
                raise cli.UsageError(f"{path} exists; pass --overwrite to replace it")
    rate = FLAGS.sample_rate
    length = int(FLAGS.seconds * rate)
    clips, titles = [], []
    for name, title, take, seed, wet in panels:
        if take is None:
            x = synthetic.clip(seed, length, wet, rate, mix="classic")
        else:
            x = synthetic.render(take, seed, length, wet, rate)
        clips.append(np.asarray(x))
        titles.append(title)
        if FLAGS.wav_dir:
            os.makedirs(FLAGS.wav_dir, exist_ok=True)
            audio.write_audio(os.path.join(FLAGS.wav_dir, f"{name}.wav"), x, rate, overwrite=True)
    folder = os.path.dirname(os.path.abspath(FLAGS.output))
    os.makedirs(folder, exist_ok=True)
    plots.save_spectrograms(FLAGS.output, clips, titles, rate)
    print(f"{FLAGS.output}: {len(clips)} clips of {FLAGS.seconds:g} s")


if __name__ == "__main__":
    cli.run(main)
