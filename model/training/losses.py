"""The two training losses of the reference (Wang et al., ICCV 2023, and OpenGait's configuration), computed per part."""

import torch
import torch.nn.functional as F

# Keeps the square root differentiable where two embeddings coincide.
DISTANCE_FLOOR = 1e-12


def triplet_loss(embeddings, labels, margin=0.2):
    """Batch-all triplet loss per part, averaged over the triplets that still violate the margin.

    embeddings [N, P, C], labels [N]. Returns (loss, fraction of triplets still active).
    """
    parts = embeddings.permute(1, 0, 2).float()
    squared = (
        (parts * parts).sum(-1, keepdim=True)
        + (parts * parts).sum(-1).unsqueeze(1)
        - 2 * parts.matmul(parts.transpose(1, 2))
    )
    distance = squared.clamp(min=DISTANCE_FLOOR).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    negative = ~same
    # [P, anchor, positive, negative]
    violation = margin + distance.unsqueeze(3) - distance.unsqueeze(2)
    valid = (positive.unsqueeze(2) & negative.unsqueeze(1)).unsqueeze(0)
    losses = F.relu(violation) * valid
    active = (losses > 0).sum(dim=(1, 2, 3))
    per_part = losses.sum(dim=(1, 2, 3)) / active.clamp(min=1)
    return per_part.mean(), active.sum().item() / max(valid.sum().item() * parts.shape[0], 1)


def cross_entropy_loss(logits, labels):
    """Cross-entropy of every part's logits against the identity. logits [N, P, classes].

    Returns (loss, accuracy of the part-averaged logits)."""
    n, parts, classes = logits.shape
    logits = logits.float()
    loss = F.cross_entropy(logits.reshape(n * parts, classes), labels.repeat_interleave(parts))
    accuracy = (logits.mean(dim=1).argmax(dim=1) == labels).float().mean().item()
    return loss, accuracy
