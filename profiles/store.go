package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/channels"
)

// Store reads and writes profiles and the consent ledger.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const (
	customerGetMany = `SELECT id, salutation, first_name, last_name, birthday, language,
	coalesce(email, ''), coalesce(mobile, ''), street, postcode, city, in_supply_area,
	coalesce(preferred_channel, ''), churn_index
FROM customers WHERE id = ANY($1)`

	contractListByCustomers = `SELECT customer_id, id, product, tariff, basic_supply, starts_on, ends_on,
	notice_period_days, coalesce(monthly_installment_eur, 0)::float8
FROM contracts WHERE customer_id = ANY($1) ORDER BY customer_id, starts_on`

	interestListByCustomers = `SELECT customer_id, topic, strength, source
FROM interests WHERE customer_id = ANY($1) ORDER BY customer_id, strength DESC, topic`

	consentCurrentByCustomers = `SELECT DISTINCT ON (customer_id, channel, purpose)
	id, customer_id, channel, purpose, granted, recorded_at, touchpoint
FROM consents WHERE customer_id = ANY($1)
ORDER BY customer_id, channel, purpose, recorded_at DESC, id DESC`
)

// Get loads one profile.
func (s *Store) Get(ctx context.Context, id string) (*Profile, error) {
	m, err := s.GetMany(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	p, ok := m[id]
	if !ok {
		return nil, ErrNotFound
	}
	return p, nil
}

// GetMany loads the profiles of ids in one round trip; unknown ids are
// missing from the map.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]*Profile, error) {
	out := make(map[string]*Profile, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	b.Queue(customerGetMany, ids)
	b.Queue(contractListByCustomers, ids)
	b.Queue(interestListByCustomers, ids)
	b.Queue(consentCurrentByCustomers, ids)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()

	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("loading customers: %w", err)
	}
	for rows.Next() {
		p := &Profile{}
		var birthday pgtype.Date
		var preferred string
		var churn *float32
		if err := rows.Scan(&p.ID, &p.Salutation, &p.FirstName, &p.LastName, &birthday, &p.Language,
			&p.Email, &p.Mobile, &p.Street, &p.Postcode, &p.City, &p.InSupplyArea, &preferred, &churn); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading customer: %w", err)
		}
		if birthday.Valid {
			p.Birthday = birthday.Time
		}
		p.PreferredChannel = channels.Kind(preferred)
		if churn != nil {
			v := float64(*churn)
			p.ChurnIndex = &v
		}
		out[p.ID] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading customers: %w", err)
	}

	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("loading contracts: %w", err)
	}
	for rows.Next() {
		var cid string
		var c Contract
		var ends pgtype.Date
		if err := rows.Scan(&cid, &c.ID, &c.Product, &c.Tariff, &c.BasicSupply, &c.StartsOn, &ends,
			&c.NoticePeriodDays, &c.MonthlyInstallmentEUR); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading contract: %w", err)
		}
		if ends.Valid {
			c.EndsOn = ends.Time
		}
		if p := out[cid]; p != nil {
			p.Contracts = append(p.Contracts, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading contracts: %w", err)
	}

	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("loading interests: %w", err)
	}
	for rows.Next() {
		var cid string
		var in Interest
		var strength float32
		if err := rows.Scan(&cid, &in.Topic, &strength, &in.Source); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading interest: %w", err)
		}
		in.Strength = float64(strength)
		if p := out[cid]; p != nil {
			p.Interests = append(p.Interests, in)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading interests: %w", err)
	}

	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("loading consents: %w", err)
	}
	for rows.Next() {
		var c Consent
		var ch string
		if err := rows.Scan(&c.ID, &c.CustomerID, &ch, &c.Purpose, &c.Granted, &c.RecordedAt, &c.Touchpoint); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading consent: %w", err)
		}
		c.Channel = channels.Kind(ch)
		if p := out[c.CustomerID]; p != nil {
			p.Consents = append(p.Consents, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading consents: %w", err)
	}
	return out, nil
}

// RecordConsent appends an entry to the consent ledger and returns its id.
func (s *Store) RecordConsent(ctx context.Context, c Consent) (int64, error) {
	if !c.Channel.Valid() {
		return 0, fmt.Errorf("recording consent: unknown channel %q", c.Channel)
	}
	if c.Touchpoint == "" {
		return 0, errors.New("recording consent: touchpoint is required")
	}
	ev, err := json.Marshal(c.Evidence)
	if err != nil {
		return 0, fmt.Errorf("recording consent: evidence: %w", err)
	}
	if c.Evidence == nil {
		ev = []byte("{}")
	}
	at := c.RecordedAt
	if at.IsZero() {
		at = time.Now()
	}
	var id int64
	err = s.pool.QueryRow(ctx, `INSERT INTO consents (customer_id, channel, purpose, granted, recorded_at, touchpoint, evidence)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		c.CustomerID, string(c.Channel), c.Purpose, c.Granted, at, c.Touchpoint, ev).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("recording consent: %w", err)
	}
	return id, nil
}

// Import writes profiles (customers, contracts, interests and their consent
// entries) with COPY in one transaction; for loading demo towns and tests.
// Existing customers with the same ids make it fail.
func (s *Store) Import(ctx context.Context, ps []Profile) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("importing profiles: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	_, err = tx.CopyFrom(ctx, pgx.Identifier{"customers"},
		[]string{"id", "salutation", "first_name", "last_name", "birthday", "language", "email", "mobile",
			"street", "postcode", "city", "in_supply_area", "preferred_channel", "churn_index"},
		pgx.CopyFromSlice(len(ps), func(i int) ([]any, error) {
			p := &ps[i]
			lang := p.Language
			if lang == "" {
				lang = "de"
			}
			var churn *float32
			if p.ChurnIndex != nil {
				v := float32(*p.ChurnIndex)
				churn = &v
			}
			return []any{p.ID, p.Salutation, p.FirstName, p.LastName, nullDate(p.Birthday), lang,
				nullStr(p.Email), nullStr(p.Mobile), p.Street, p.Postcode, p.City, p.InSupplyArea,
				nullStr(string(p.PreferredChannel)), churn}, nil
		}))
	if err != nil {
		return fmt.Errorf("importing customers: %w", err)
	}
	var contracts, interests, consents [][]any
	for i := range ps {
		p := &ps[i]
		for _, c := range p.Contracts {
			contracts = append(contracts, []any{c.ID, p.ID, c.Product, c.Tariff, c.BasicSupply, c.StartsOn,
				nullDate(c.EndsOn), c.NoticePeriodDays, c.MonthlyInstallmentEUR})
		}
		for _, in := range p.Interests {
			interests = append(interests, []any{p.ID, in.Topic, float32(in.Strength), in.Source})
		}
		for _, c := range p.Consents {
			ev := []byte("{}")
			if c.Evidence != nil {
				var err error
				if ev, err = json.Marshal(c.Evidence); err != nil {
					return fmt.Errorf("importing consents of %s: evidence: %w", p.ID, err)
				}
			}
			at := c.RecordedAt
			if at.IsZero() {
				at = time.Now()
			}
			consents = append(consents, []any{p.ID, string(c.Channel), c.Purpose, c.Granted, at, c.Touchpoint, ev})
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"contracts"},
		[]string{"id", "customer_id", "product", "tariff", "basic_supply", "starts_on", "ends_on", "notice_period_days", "monthly_installment_eur"},
		pgx.CopyFromRows(contracts)); err != nil {
		return fmt.Errorf("importing contracts: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"interests"},
		[]string{"customer_id", "topic", "strength", "source"}, pgx.CopyFromRows(interests)); err != nil {
		return fmt.Errorf("importing interests: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"consents"},
		[]string{"customer_id", "channel", "purpose", "granted", "recorded_at", "touchpoint", "evidence"},
		pgx.CopyFromRows(consents)); err != nil {
		return fmt.Errorf("importing consents: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("importing profiles: %w", err)
	}
	return nil
}

// Count returns the number of customers.
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM customers`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting customers: %w", err)
	}
	return n, nil
}

func nullStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullDate(t time.Time) pgtype.Date {
	if t.IsZero() {
		return pgtype.Date{}
	}
	return pgtype.Date{Time: t, Valid: true}
}

// Exists reports whether a customer exists.
func (s *Store) Exists(ctx context.Context, id string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1)`, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("checking customer: %w", err)
	}
	return ok, nil
}
