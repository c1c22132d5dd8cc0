/**
 * The stack view of api.md ("Stack view" and "Precise semantics"), computed from the folded
 * state only, so the read model, `history/{revision}` and tests show the same thing.
 */
import type { StackStatus } from '../../../machines/stack/stack.model.js';
import type { ResourceStatus } from './graph.js';
import type { ResourceRecord, StackState } from './state.js';
import type { Template } from './template.js';

export interface StackResourceView {
  name: string;
  record_id: string;
  type: string;
  status: ResourceStatus;
  status_reason: string;
  physical_id: string | null;
  attributes: Record<string, unknown>;
  requires: string[];
}

export interface StackView {
  id: string;
  name: string | null;
  owner: string;
  status: StackStatus;
  status_reason: string | null;
  template: Template | null;
  timeout_s: number;
  rollback_on_failure: boolean;
  resources: StackResourceView[];
  outputs: Record<string, unknown>;
  revision: number;
  created_at: string | null;
  updated_at: string | null;
}

/** One entry per existing record, old versions being replaced or deleted included, oldest first. */
export function resourceViews(s: StackState): StackResourceView[] {
  return Object.values(s.records).sort((a, b) => a.seq - b.seq).map(resourceView);
}

function resourceView(r: ResourceRecord): StackResourceView {
  return {
    name: r.name, record_id: r.record_id, type: r.type, status: r.status, status_reason: r.status_reason,
    physical_id: r.physical_id, attributes: r.attributes, requires: [...r.requires_names],
  };
}

/** The public JSON of a stack. */
export function stackView(s: StackState): StackView {
  return {
    id: s.id, name: s.name, owner: s.owner, status: s.status, status_reason: s.status_reason, template: s.template,
    timeout_s: s.timeout_s, rollback_on_failure: s.rollback_on_failure, resources: resourceViews(s), outputs: { ...s.outputs },
    revision: s.revision, created_at: s.created_at, updated_at: s.updated_at,
  };
}
