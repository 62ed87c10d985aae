"""The Train page's form: a recipe, every setting, then a training job or a learning-rate finder with those settings."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

import loaders
import lrfind_view
import widgets
from fer_core import jobs
from fer_core.checkpoint import CheckpointError
from fer_core.checks import available_devices
from fer_core.config import RECIPES, TrainConfig
from fer_core.models import list_models
from fer_core.train import bf16_supported, init_recipe
from fer_core.transforms import AUGMENT_LEVELS

RANDOM = "random weights"


def new_run(s: widgets.Settings, expanded: bool) -> None:
    """The form in an expander; "Start training" starts a job (selected in the page's run list), "Find learning rate"
    a range test (lrfind_view shows it); a refused start is an error under the form."""
    with st.expander("New training run", expanded=expanded):
        recipe = st.selectbox("Recipe", list(RECIPES), format_func=lambda r: f"{r}: {RECIPES[r].summary}",
                              help="Fills the form below with a named recipe (`python -m fer_core.train --recipe NAME`); "
                                   "every field can still be changed")
        d = RECIPES[recipe].config()
        with st.form("train"):
            checkpoints = list(map(str, loaders.find_checkpoints(s.runs_root)))
            start = st.selectbox("Start from", [RANDOM, *checkpoints],
                                 format_func=lambda p: p if p == RANDOM else widgets.checkpoint_label(p),
                                 help="Fine-tune a trained model: its weights, architecture (model and width replace the "
                                      "form's) and normalisation, with a fresh optimizer and schedule (a lower learning rate "
                                      "suits this). The form's other values apply; what it does not show comes from the "
                                      "checkpoint's recipe")
            c: Sequence[DeltaGenerator] = st.columns(4)
            name = c[0].text_input("Run name", placeholder="automatic (date-model)", help="A folder name under the runs folder")
            model = c[1].selectbox("Model", list_models(), index=list_models().index(d.model), help=TrainConfig.help("model"))
            width = c[2].number_input("Width", 4, 128, d.width, help="Channels of the first stage (doubles per stage)")
            epochs = c[3].number_input("Epochs", 1, 500, d.epochs, help=TrainConfig.help("epochs"))
            c = st.columns(5)
            lr = c[0].number_input("Learning rate", 1e-4, 1.0, d.lr, format="%.4f", help=TrainConfig.help("lr"))
            batch_size = c[1].number_input("Batch size", 8, 1024, d.batch_size, step=8, help=TrainConfig.help("batch_size"))
            ema = c[2].number_input("Weight average", 0.0, 0.9999, d.ema, step=0.001, format="%.4f",
                                    help="Per-step decay of an exponential moving average of the weights (0 = off; 0.999 "
                                         "averages about the last 1,000 steps): the average is what is evaluated and saved")
            patience = c[3].number_input("Patience (0 = off)", 0, 500, d.patience, help="Stop after N epochs without progress")
            crop_size = c[4].number_input("Crop size", 32, 48, d.crop_size, help=TrainConfig.help("crop_size"))
            st.markdown("**Augmentation and targets**")
            c = st.columns(5)
            augment = c[0].selectbox("Augmentation", list(AUGMENT_LEVELS), index=list(AUGMENT_LEVELS).index(d.augment),
                                     help=TrainConfig.help("augment"))
            erasing = c[1].number_input("Random erasing", 0.0, 1.0, d.erasing, step=0.1, help=TrainConfig.help("erasing"))
            mixup = c[2].number_input("Mixup alpha", 0.0, 2.0, d.mixup, step=0.1, help=TrainConfig.help("mixup"))
            label_smoothing = c[3].number_input("Label smoothing", 0.0, 0.5, d.label_smoothing, step=0.05,
                                                help=TrainConfig.help("label_smoothing"))
            degrade = c[4].number_input("Photo degradation", 0.0, 1.0, d.degrade, step=0.1, help=TrainConfig.help("degrade"))
            c = st.columns(5, vertical_alignment="bottom")  # the checkboxes line up with the inputs' boxes
            labels = c[0].selectbox("Labels", ["fer2013", "ferplus"],
                                    help="ferplus trains on FER+ majority votes (fer2013new.csv)")
            soft_labels = c[1].number_input("FER+ soft labels", 0.0, 1.0, d.soft_labels, step=0.1,
                                            help="Move each training target towards the image's FER+ vote shares by this weight "
                                                 "(needs fer2013new.csv beside the CSV; 0.3 gained 0.9 points in a GPU sweep)")
            jpeg = c[2].number_input("JPEG compression", 0.0, 1.0, d.jpeg, step=0.1, help=TrainConfig.help("jpeg"))
            limit = c[3].number_input("Limit training images (0 = all)", 0, 100_000, 0, help=TrainConfig.help("limit"))
            class_weights = c[4].checkbox("Class weights", help="Weight the loss by inverse class frequency (helps disgust)")
            st.markdown("**Distillation**")
            c = st.columns([2, 1, 1])
            teachers = c[0].multiselect("Teachers", checkpoints, format_func=widgets.checkpoint_label, placeholder="no teacher",
                                        help="Knowledge distillation: trained models score every augmented batch and the student "
                                             "also learns their softened answers (several: the mean of their probabilities; "
                                             "each costs its forward pass per batch)")
            distill = c[1].number_input("Teacher weight", 0.0, 1.0, 0.8, step=0.1,
                                        help="Share of the teacher's term in the loss (the labels get the rest); "
                                             "used only with a teacher")
            distill_t = c[2].number_input("Teacher temperature", 0.5, 10.0, d.distill_t, step=0.5,
                                          help="Softens both models' answers in the teacher's term")
            st.markdown("**Hardware**")
            c = st.columns(4, vertical_alignment="bottom")
            device = c[0].selectbox("Device", available_devices(), index=len(available_devices()) - 1,
                                    help="cuda appears where PyTorch sees a GPU: data, augmentation and bf16 autocast then "
                                         "run on it")
            threads = c[1].number_input("CPU threads (0 = all)", 0, 64, 0)
            bf16 = c[2].checkbox("bfloat16", value=bf16_supported(), help="bfloat16 autocast: about 2.4x faster on CPUs with "
                                 "AVX512-BF16 or AMX (on by default where this CPU has it); weights stay float32")
            c = st.columns([1, 1, 3])
            submitted = c[0].form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                                disabled=s.data_path is None)
            find_lr = c[1].form_submit_button("Find learning rate", icon=":material/query_stats:", disabled=s.data_path is None,
                                              help="A learning-rate range test with these settings: 300 SGD steps at a growing "
                                                   "learning rate, in its own process (about a minute for the small VGG here)")
    if submitted or find_lr:
        try:  # fine-tuning: the form's values win; what the form does not show comes from the checkpoint's recipe
            base = d if start == RANDOM else init_recipe(start)
            cfg = base.replace(data=str(s.data_path), model=model, width=int(width), epochs=int(epochs), lr=float(lr),
                               batch_size=int(batch_size), ema=float(ema), augment=augment,
                               label_smoothing=float(label_smoothing),
                               patience=int(patience), erasing=float(erasing), mixup=float(mixup), degrade=float(degrade),
                               jpeg=float(jpeg), soft_labels=float(soft_labels),
                               labels=labels, limit=int(limit), threads=int(threads), crop_size=int(crop_size),
                               class_weights=class_weights, precision="bf16" if bf16 else "fp32", device=device,
                               warmup_epochs=min(base.warmup_epochs, int(epochs) - 1))
            if teachers:
                cfg = cfg.replace(teacher=",".join(teachers), distill=float(distill), distill_t=float(distill_t))
            if start != RANDOM:  # the architecture is the checkpoint's
                cfg = cfg.replace(init=start, model=base.model, width=base.width, drop_rate=base.drop_rate)
            if find_lr:
                lrfind_view.start(cfg, s.runs_root)
            else:
                job = jobs.start_job(cfg, s.runs_root, name=name.strip() or None)
                st.session_state["train-run"] = job.name
                st.toast(f"Started {job.name} (pid {job.pid})")
        except (jobs.JobError, CheckpointError, ValueError, OSError) as e:  # OSError: the runs folder cannot be written
            st.error(str(e))
