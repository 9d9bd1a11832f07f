"""BATMM's networks, top to bottom: input scaling, the spectrum encoder (VGG-style 1-D CNN with
self-attention over wavelength segments), the image encoder (squeeze-and-excitation over the bands,
then a small ResNet), and the fusion transformer (modality embeddings, [CLS], cross-attention
image -> spectrum, self-attention, feed-forward) with learned missing-modality tokens.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import BatmmConfig


# ============================================================================ inputs
def scale_spectra(flux: np.ndarray) -> np.ndarray:
    """Per-spectrum min-max scaling to [0, 1] (the paper's), robust to single hot pixels: the
    0.2 and 99.8 percentiles stand in for min and max. (n, n_pixels) float32."""
    flux = np.asarray(flux, np.float32)
    low = np.percentile(flux, 0.2, axis=1, keepdims=True)
    high = np.percentile(flux, 99.8, axis=1, keepdims=True)
    return np.clip((flux - low) / np.maximum(high - low, 1e-12), -0.5, 1.5).astype(np.float32)


def scale_images(images: np.ndarray, reference_band: int = 2, box: int = 7) -> np.ndarray:
    """Cutouts divided by the reference band's flux in the central ``box`` x ``box`` pixels, so
    that the star's colours (flux ratios between bands) survive and its brightness does not.
    (n, bands, h, w) float32, clipped to [-5, 50]."""
    images = np.asarray(images, np.float32)
    h, w = images.shape[-2:]
    y0, x0 = (h - box) // 2, (w - box) // 2
    centre = images[:, reference_band, y0:y0 + box, x0:x0 + box].sum(axis=(1, 2))
    # A faint reference (noise) would blow the image up; the median over bands keeps the scale sane.
    fallback = np.median(images[:, :, y0:y0 + box, x0:x0 + box].sum(axis=(2, 3)), axis=1)
    reference = np.where(centre > 0, centre, np.maximum(fallback, 1e-3))
    return np.clip(10.0 * images / np.maximum(reference, 1e-3)[:, None, None, None], -5.0, 50.0).astype(np.float32)


# ============================================================================ spectrum encoder
class VGGBlock1d(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, pool: int):
        super().__init__(
            nn.Conv1d(c_in, c_out, 5, padding=2), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True),
            nn.Conv1d(c_out, c_out, 5, padding=2), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True),
            nn.MaxPool1d(pool),
        )


class SpectrumEncoder(nn.Module):
    """Spectrum (B, n_pixels) -> segment tokens (B, n_segments, d), pooled token (B, d), segment
    weights (B, n_segments) that sum to 1 (None without attention), and a BHB logit (B,)."""

    def __init__(self, config: BatmmConfig, attention: bool | None = None):
        super().__init__()
        self.attention = config.spectrum_attention if attention is None else attention
        channels = (config.spectrum_channels[0], *config.spectrum_channels)
        # A strided stem (4 pixels, ~2 resolution elements, per step) keeps CPU training fast.
        self.stem = nn.Sequential(nn.Conv1d(1, channels[0], 8, stride=4, padding=2), nn.BatchNorm1d(channels[0]),
                                  nn.ReLU(inplace=True))
        self.features = nn.Sequential(*[VGGBlock1d(a, b, 2) for a, b in zip(channels[:-1], channels[1:])])
        self.n_segments, d = config.n_segments, config.encoder_dim
        self.per_segment = 4  # feature-map positions kept per segment
        self.pool = nn.AdaptiveAvgPool1d(self.n_segments * self.per_segment)
        self.to_token = nn.Linear(channels[-1] * self.per_segment, d)
        self.position = nn.Parameter(torch.zeros(1, self.n_segments, d))
        if self.attention:
            self.norm = nn.LayerNorm(d)
            self.self_attention = nn.MultiheadAttention(d, num_heads=4 if d % 4 == 0 else 1, batch_first=True)
            self.score = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1))
        else:
            self.flatten = nn.Sequential(nn.Linear(self.n_segments * d, d), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(d, 1))

    def forward(self, spectrum: torch.Tensor) -> dict:
        x = self.pool(self.features(self.stem(spectrum[:, None, :])))  # (B, C, segments * per_segment)
        B, C, _ = x.shape
        x = x.view(B, C, self.n_segments, self.per_segment).permute(0, 2, 1, 3).reshape(B, self.n_segments, -1)
        tokens = self.to_token(x) + self.position
        if self.attention:
            normed = self.norm(tokens)
            tokens = tokens + self.self_attention(normed, normed, normed, need_weights=False)[0]
            weights = torch.softmax(self.score(tokens).squeeze(-1), dim=1)
            pooled = (weights[:, :, None] * tokens).sum(dim=1)
        else:
            weights = None
            pooled = self.flatten(tokens.reshape(B, -1))
        return {"tokens": tokens, "pooled": pooled, "weights": weights, "logit": self.head(pooled).squeeze(-1)}


# ============================================================================ image encoder
class BandSqueezeExcite(nn.Module):
    """Squeeze-and-excitation over the input bands: weights (B, bands) summing to 1, from each
    band's mean and peak; the image is multiplied by bands x weights (1 on average)."""

    def __init__(self, n_bands: int, hidden: int = 16):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(2 * n_bands, hidden), nn.ReLU(), nn.Linear(hidden, n_bands))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        summary = torch.cat([image.mean(dim=(2, 3)), image.amax(dim=(2, 3))], dim=1)
        weights = torch.softmax(self.gate(summary), dim=1)
        return image * (weights * image.shape[1])[:, :, None, None], weights


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out
                     else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.skip(x))


class ImageEncoder(nn.Module):
    """Cutouts (B, bands, h, w) -> spatial tokens (B, 16, d) on a 4 x 4 grid, pooled token (B, d),
    band weights (B, bands) and a BHB logit (B,)."""

    grid = 4

    def __init__(self, config: BatmmConfig, n_bands: int = 5):
        super().__init__()
        self.squeeze_excite = BandSqueezeExcite(n_bands)
        channels = config.image_channels
        self.stem = nn.Sequential(nn.Conv2d(n_bands, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]),
                                  nn.ReLU(inplace=True))
        stages = [ResidualBlock(channels[0], channels[0], 2)]  # 32 -> 16 pixels: a star spans ~3.5
        stages += [ResidualBlock(a, b, 2) for a, b in zip(channels[:-1], channels[1:])]
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        d = config.encoder_dim
        self.to_token = nn.Linear(channels[-1], d)
        self.position = nn.Parameter(torch.zeros(1, self.grid * self.grid, d))
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(d, 1))

    def forward(self, image: torch.Tensor) -> dict:
        gated, band_weights = self.squeeze_excite(image)
        x = self.pool(self.stages(self.stem(gated)))  # (B, C, 4, 4)
        tokens = self.to_token(x.flatten(2).transpose(1, 2)) + self.position
        pooled = tokens.mean(dim=1)
        return {"tokens": tokens, "pooled": pooled, "weights": band_weights, "logit": self.head(pooled).squeeze(-1)}


# ============================================================================ fusion
class FusionBlock(nn.Module):
    """Cross-attention (image tokens query the spectral tokens), self-attention over [CLS] +
    image + spectral tokens, then a feed-forward layer; pre-norm residuals."""

    def __init__(self, d: int, heads: int, dropout: float, cross_attention: bool):
        super().__init__()
        self.use_cross = cross_attention
        if cross_attention:
            self.norm_query, self.norm_key = nn.LayerNorm(d), nn.LayerNorm(d)
            self.cross = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm_self = nn.LayerNorm(d)
        self.self_attention = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))

    def forward(self, cls, image, spectrum):
        cross_weights = None
        if self.use_cross:
            attended, cross_weights = self.cross(self.norm_query(image), self.norm_key(spectrum), self.norm_key(spectrum),
                                                 need_weights=True, average_attn_weights=False)
            image = image + attended
        tokens = torch.cat([cls, image, spectrum], dim=1)
        normed = self.norm_self(tokens)
        tokens = tokens + self.self_attention(normed, normed, normed, need_weights=False)[0]
        tokens = tokens + self.ffn(self.norm_ffn(tokens))
        n_image = image.shape[1]
        return tokens[:, :1], tokens[:, 1:1 + n_image], tokens[:, 1 + n_image:], cross_weights


class FusionTransformer(nn.Module):
    """Fuses the encoders' tokens: spectral tokens (B, S, d_enc) = segments + pooled, image tokens
    (B, I, d_enc) = spatial + pooled. Missing modalities (mask False) are replaced by learned
    tokens. Returns the [CLS] token (B, d), the BHB logit (B,) and cross-attention maps per layer
    (B, heads, I, S)."""

    def __init__(self, config: BatmmConfig, n_spectral_tokens: int, n_image_tokens: int):
        super().__init__()
        d, enc = config.fusion_dim, config.encoder_dim
        self.config = config
        self.project_spectrum = nn.Linear(enc, d)
        self.project_image = nn.Linear(enc, d)
        self.position_spectrum = nn.Parameter(torch.randn(1, n_spectral_tokens, d) * 0.02)
        self.position_image = nn.Parameter(torch.randn(1, n_image_tokens, d) * 0.02)
        self.modality = nn.Parameter(torch.randn(3, d) * 0.02)  # [CLS], image, spectrum
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.missing_spectrum = nn.Parameter(torch.randn(1, n_spectral_tokens, d) * 0.02)
        self.missing_image = nn.Parameter(torch.randn(1, n_image_tokens, d) * 0.02)
        self.blocks = nn.ModuleList(FusionBlock(d, config.fusion_heads, config.dropout, config.cross_attention)
                                    for _ in range(config.fusion_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(d, 1))

    def forward(self, spectral_tokens, image_tokens, has_spectrum=None, has_image=None) -> dict:
        B = spectral_tokens.shape[0]
        spectrum = self.project_spectrum(spectral_tokens)
        image = self.project_image(image_tokens)
        if has_spectrum is not None:
            spectrum = torch.where(has_spectrum[:, None, None], spectrum, self.missing_spectrum.expand(B, -1, -1))
        if has_image is not None:
            image = torch.where(has_image[:, None, None], image, self.missing_image.expand(B, -1, -1))
        spectrum = spectrum + self.position_spectrum
        image = image + self.position_image
        cls = self.cls.expand(B, -1, -1)
        if self.config.modality_embedding:
            cls, image, spectrum = cls + self.modality[0], image + self.modality[1], spectrum + self.modality[2]
        maps = []
        for block in self.blocks:
            cls, image, spectrum, cross = block(cls, image, spectrum)
            maps.append(cross)
        fused = self.norm(cls[:, 0])
        return {"cls": fused, "logit": self.head(fused).squeeze(-1), "cross_attention": maps}


class EarlyFusion(nn.Module):
    """Baselines: the two pooled tokens added (``early_add``) or concatenated (``early_concat``),
    then an MLP. Same call signature as :class:`FusionTransformer`."""

    def __init__(self, config: BatmmConfig, mode: str, spectrum_dim: int | None = None):
        super().__init__()
        d, enc = config.fusion_dim, config.encoder_dim
        self.mode = mode
        self.project_spectrum = nn.Linear(spectrum_dim or enc, d)
        self.project_image = nn.Linear(enc, d)
        width = d if mode == "early_add" else 2 * d
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, d), nn.GELU(), nn.Dropout(config.dropout))
        self.missing_spectrum = nn.Parameter(torch.zeros(1, d))
        self.missing_image = nn.Parameter(torch.zeros(1, d))
        self.head = nn.Linear(d, 1)

    def forward(self, spectral_tokens, image_tokens, has_spectrum=None, has_image=None) -> dict:
        spectrum = self.project_spectrum(spectral_tokens[:, -1])  # the pooled token is last
        image = self.project_image(image_tokens[:, -1])
        if has_spectrum is not None:
            spectrum = torch.where(has_spectrum[:, None], spectrum, self.missing_spectrum)
        if has_image is not None:
            image = torch.where(has_image[:, None], image, self.missing_image)
        joint = spectrum + image if self.mode == "early_add" else torch.cat([spectrum, image], dim=1)
        fused = self.mlp(joint)
        return {"cls": fused, "logit": self.head(fused).squeeze(-1), "cross_attention": []}


def encoder_tokens(output: dict) -> torch.Tensor:
    """An encoder's tokens for the fusion: its segment / spatial tokens followed by its pooled token."""
    return torch.cat([output["tokens"], output["pooled"][:, None]], dim=1)


def build_fusion(config: BatmmConfig, n_spectral_tokens: int, n_image_tokens: int) -> nn.Module:
    if config.fusion == "batmm":
        return FusionTransformer(config, n_spectral_tokens, n_image_tokens)
    return EarlyFusion(config, config.fusion)
