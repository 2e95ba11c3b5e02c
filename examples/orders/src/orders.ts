// Orders: input validation and SQL. Kept apart from the HTTP layer so the same functions serve
// the transactional (idempotent) path and the plain one.
import type pg from 'pg';
import { z } from 'zod';

export const createOrderSchema = z
  .object({
    item: z.string().trim().min(1).max(200),
    quantity: z.number().int().min(1).max(10_000),
    note: z.string().max(1000).optional(),
  })
  .strict();

export const patchOrderSchema = z
  .object({
    quantity: z.number().int().min(1).max(10_000).optional(),
    note: z.string().max(1000).nullable().optional(),
    status: z.enum(['new', 'paid', 'shipped', 'cancelled']).optional(),
  })
  .strict()
  .refine((v) => Object.keys(v).length > 0, { message: 'at least one of quantity, note, status' });

export type CreateOrder = z.infer<typeof createOrderSchema>;
export type PatchOrder = z.infer<typeof patchOrderSchema>;

export interface Order {
  id: string;
  item: string;
  quantity: number;
  note: string | null;
  status: string;
  createdBy: string;
  instanceId: string;
  createdAt: string;
  updatedAt: string;
}

type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

const COLUMNS = 'id, item, quantity, note, status, created_by, instance_id, created_at, updated_at';

function toOrder(row: Record<string, unknown>): Order {
  return {
    id: String(row.id),
    item: String(row.item),
    quantity: Number(row.quantity),
    note: row.note === null ? null : String(row.note),
    status: String(row.status),
    createdBy: String(row.created_by),
    instanceId: String(row.instance_id),
    createdAt: (row.created_at as Date).toISOString(),
    updatedAt: (row.updated_at as Date).toISOString(),
  };
}

export async function insertOrder(db: Queryable, input: CreateOrder, createdBy: string, instanceId: string) {
  const r = await db.query(
    `INSERT INTO orders (item, quantity, note, created_by, instance_id) VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
    [input.item, input.quantity, input.note ?? null, createdBy, instanceId],
  );
  return toOrder(r.rows[0]);
}

export async function getOrder(db: Queryable, id: string): Promise<Order | undefined> {
  const r = await db.query(`SELECT ${COLUMNS} FROM orders WHERE id = $1`, [id]);
  return r.rows[0] ? toOrder(r.rows[0]) : undefined;
}

export async function patchOrder(db: Queryable, id: string, patch: PatchOrder): Promise<Order | undefined> {
  const sets: string[] = [];
  const values: unknown[] = [];
  for (const [k, v] of Object.entries(patch)) {
    values.push(v);
    sets.push(`${k} = $${values.length}`);
  }
  values.push(id);
  const r = await db.query(
    `UPDATE orders SET ${sets.join(', ')}, updated_at = now() WHERE id = $${values.length} RETURNING ${COLUMNS}`,
    values,
  );
  return r.rows[0] ? toOrder(r.rows[0]) : undefined;
}

export async function listOrders(db: Queryable, limit: number): Promise<Order[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM orders ORDER BY created_at DESC, id DESC LIMIT $1`, [
    limit,
  ]);
  return r.rows.map(toOrder);
}
